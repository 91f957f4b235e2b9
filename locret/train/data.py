"""Training examples for retaining heads: (prompt, answer) pairs from several sources, tokenized.

Sources: LongAlpaca-12k from the hub (``longalpaca``), or local files in ShareGPT, Alpaca or SQuALITY
form (``squality``: the first reference answer of each question; ``squality-all``: all of them;
``squality-longalpaca``: the first answer, the prompt framed as LongAlpaca frames its papers) (``.jsonl``
read line by line so one broken line is counted, not fatal; ``.json``/``.parquet``/``.csv`` through
``datasets``). Every source becomes the same stream of ``TextExample`` and then ``Example`` (token ids). A
row that cannot be used is never dropped silently: it becomes a ``Skip`` with a reason, which ``SkipLog``
counts, logs and hands to the manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

LONGALPACA_HUB_ID = "Yukang/LongAlpaca-12k"
FORMATS = ("auto", "sharegpt", "alpaca", "squality", "squality-all", "squality-longalpaca")
# Formats sized in tokens, built by ``natural_data`` with the tokenizer (not row by row here).
SAMPLED_FORMATS = ("reconstruct", "nq-multidoc")
# LongAlpaca-12k's single-paper prompt (the paper's training data), with "paper" read as "story": an
# instruction to memorize before the document, and markers around it.
LONGALPACA_FRAME = (
    "Below is a story. Memorize the story and answer my question after the story.\n"
    " The story begins. \n{document}\n Now the story ends. \n{question}"
)
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "bot", "model"}

# Skip reasons (stable strings: they are keys of the manifest's "skipped" counts).
UNREADABLE = "unreadable"
UNKNOWN_FORMAT = "unknown_format"
NO_PROMPT = "no_prompt"
NO_ANSWER = "no_answer"
PROMPT_TOO_SHORT = "prompt_too_short"


@dataclasses.dataclass(frozen=True)
class TextExample:
    """A prompt and its answer; ``more_answers`` are other reference answers to the same prompt (the labels
    are then the maximum over all answers: each token is kept if any good answer needs it)."""

    id: str
    prompt: str
    answer: str
    more_answers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Example:
    """One tokenized training example: labels are computed for ``prompt_ids`` from ``answer_ids``."""

    id: str
    prompt_ids: list[int]
    answer_ids: list[int]
    more_answer_ids: tuple[list[int], ...] = ()

    @property
    def answers(self) -> list[list[int]]:
        return [self.answer_ids, *self.more_answer_ids]


@dataclasses.dataclass(frozen=True)
class Skip:
    """A row (or one question of a row) that could not be used, and why."""

    id: str
    reason: str


class SkipLog:
    """Skipped rows keyed by id, so re-reading the same rows after a resume does not count them twice."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self.reasons: dict[str, str] = dict(initial or {})

    def add(self, skip: Skip) -> None:
        if skip.id not in self.reasons:
            logger.warning("skipping %s: %s", skip.id, skip.reason)
        self.reasons[skip.id] = skip.reason

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.reasons.values()).items()))


# ----------------------------------------------------------------------------------------------- rows


def read_rows(source: str) -> Iterator[tuple[int, dict | None]]:
    """``(row index, row)`` pairs; ``row`` is None for a line that is not a JSON object."""
    path = Path(source)
    if source == "longalpaca":
        yield from enumerate(_hub_rows(LONGALPACA_HUB_ID))
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            for index, line in enumerate(lines):
                yield index, _parse_line(line)
    elif path.is_file():
        yield from enumerate(_datasets_rows(path))
    else:
        raise FileNotFoundError(
            f"no such data file: {source} (use a local file, or 'longalpaca' for the hub)"
        )


def _parse_line(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def _hub_rows(hub_id: str) -> Iterable[dict]:
    import datasets

    try:
        return datasets.load_dataset(hub_id, split="train")
    except Exception as err:  # the hub raises many types (connection, offline mode, missing file)
        raise RuntimeError(
            f"could not load {hub_id} from the Hugging Face hub ({type(err).__name__}: {err}). Offline? "
            "Download it elsewhere and pass the local file: --data LongAlpaca-12k.json --format alpaca"
        ) from err


def _datasets_rows(path: Path) -> Iterable[dict]:
    import datasets

    builder = {".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
    if builder is None:
        raise ValueError(f"unsupported data file type {path.suffix!r}: use .jsonl, .json, .parquet or .csv")
    return datasets.load_dataset(builder, data_files=str(path), split="train")


# ------------------------------------------------------------------------------------------ formats


def detect_format(row: dict) -> str | None:
    if "conversations" in row:
        return "sharegpt"
    if "document" in row and "questions" in row:
        return "squality"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return None


def row_examples(index: int, row: dict | None, fmt: str) -> list[TextExample | Skip]:
    """The examples of one row (SQuALITY rows hold several), or why it cannot be used."""
    row_id = f"{index:06d}"
    if row is None:
        return [Skip(row_id, UNREADABLE)]
    fmt = detect_format(row) if fmt == "auto" else fmt
    try:
        if fmt == "sharegpt":
            return [_check(row_id, *_sharegpt(row))]
        if fmt == "alpaca":
            return [_check(row_id, *_alpaca(row))]
        if fmt in ("squality", "squality-all", "squality-longalpaca"):
            return _squality(
                row_id,
                row,
                every_reference=fmt == "squality-all",
                longalpaca_frame=fmt == "squality-longalpaca",
            )
    except (KeyError, TypeError, AttributeError, IndexError):
        return [Skip(row_id, UNREADABLE)]
    return [Skip(row_id, UNKNOWN_FORMAT)]


def _check(example_id: str, prompt: str | None, answer: str | None) -> TextExample | Skip:
    if not prompt or not prompt.strip():
        return Skip(example_id, NO_PROMPT)
    if not answer or not answer.strip():
        return Skip(example_id, NO_ANSWER)
    return TextExample(example_id, prompt, answer)


def _sharegpt(row: dict) -> tuple[str | None, str | None]:
    """First user turn and the first assistant turn after it (``from``/``value`` or ``role``/``content``)."""
    prompt = answer = None
    for turn in row["conversations"]:
        role = str(turn.get("from", turn.get("role", ""))).lower()
        text = turn.get("value", turn.get("content"))
        if prompt is None and role in USER_ROLES:
            prompt = text
        elif prompt is not None and role in ASSISTANT_ROLES:
            answer = text
            break
    return prompt, answer


def _alpaca(row: dict) -> tuple[str | None, str | None]:
    instruction, extra = row["instruction"], row.get("input") or ""
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return prompt, row["output"]


def _squality(
    row_id: str, row: dict, every_reference: bool = False, longalpaca_frame: bool = False
) -> list[TextExample | Skip]:
    """One example per question: the story then the question; the first reference response is the answer,
    and with ``every_reference`` the other (non-empty) responses are its ``more_answers``. With
    ``longalpaca_frame`` the prompt reads as LongAlpaca's (``LONGALPACA_FRAME``), the data SQuALITY stands in
    for: the paper's heads learned from prompts that open with a task instruction, as real long-input
    prompts do."""
    document = row["document"]
    out: list[TextExample | Skip] = []
    for number, question in enumerate(row["questions"]):
        example_id = f"{row_id}-q{question.get('question_number', number)}"
        texts = [r.get("response_text") for r in question.get("responses") or []]
        if not document:
            prompt = None
        elif longalpaca_frame:
            prompt = LONGALPACA_FRAME.format(document=document.strip(), question=question["question_text"])
        else:
            prompt = f"{document.strip()}\n\n{question['question_text']}"
        example = _check(example_id, prompt, texts[0] if texts else None)
        if every_reference and isinstance(example, TextExample):
            more = tuple(text for text in texts[1:] if text and text.strip())
            example = dataclasses.replace(example, more_answers=more)
        out.append(example)
    return out


def text_examples(source: str, fmt: str = "auto") -> Iterator[TextExample | Skip]:
    """Every (prompt, answer) pair of a source, in a fixed order, with unusable rows as ``Skip``."""
    if fmt in SAMPLED_FORMATS:
        raise ValueError(f"format {fmt!r} is sized in tokens: build it with locret.train.natural_data")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    for index, row in read_rows(source):
        yield from row_examples(index, row, fmt)


# ------------------------------------------------------------------------------------- tokenization


@dataclasses.dataclass(frozen=True)
class Tokenization:
    """How text becomes token ids.

    ``raw_template`` feeds the prompt and answer as plain text (base models without a chat template);
    otherwise the model's own chat template renders them, as the model will see prompts at inference.
    ``distractor_tokens`` > 0 inserts that many tokens of one short passage of ``distractor_text`` (a plain
    text file), repeated, into the document (see :func:`insert_repeated_passage`).
    """

    max_prompt_tokens: int = 10240
    max_answer_tokens: int = 1024
    min_prompt_tokens: int = 16
    raw_template: bool = False
    distractor_tokens: int = 0
    distractor_text: str | None = None


def render(
    tokenizer, prompt: str, answers: Sequence[str], raw_template: bool
) -> tuple[list[int], list[list[int]]]:
    """Prompt token ids (tokenized once) and each answer's. An answer is what the template adds after the
    generation prompt (for ChatML: the text and ``<|im_end|>``), so the label rows are the tokens the model
    would write."""
    if raw_template:
        prompt_ids = tokenizer(prompt)["input_ids"]
        return prompt_ids, [tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in answers]
    user = [{"role": "user", "content": prompt}]
    prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    answer_ids = []
    for answer in answers:
        full_text = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": answer}], tokenize=False
        )
        answer_text = full_text[len(prompt_text) :] if full_text.startswith(prompt_text) else answer
        answer_ids.append(tokenizer(answer_text.rstrip("\n"), add_special_tokens=False)["input_ids"])
    return tokenizer(prompt_text, add_special_tokens=False)["input_ids"], answer_ids


def truncate_middle(ids: list[int], max_tokens: int) -> list[int]:
    """Keep the first and last ``max_tokens // 2`` tokens, dropping the middle.

    The start holds the system prompt and the task instruction, the end holds the question and the
    template's generation prompt; both are what the answer attends to most, and cutting either would
    produce an example unlike any real prompt. The middle of a long document is the least harmful loss.
    """
    if len(ids) <= max_tokens:
        return ids
    head = max_tokens // 2
    return ids[:head] + ids[len(ids) - (max_tokens - head) :]


def passages(text: str, min_words: int = 12, max_words: int = 60) -> list[str]:
    """The paragraphs of a plain text (blank-line separated, whitespace joined) of a usable length."""
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", text))
    return [p for p in paragraphs if min_words <= len(p.split()) <= max_words]


def insert_repeated_passage(
    tokenizer, prompt_ids: list[int], passage: str, n_tokens: int, rng: random.Random
) -> list[int]:
    """``prompt_ids`` with ``passage`` repeated to ``n_tokens`` tokens inserted after a random sentence end
    in its middle 80%.

    Why: the answer never needs the repeats, so their CIS labels are low, while the model's features mark
    them as text it has already read. Heads trained only on natural documents never see redundant text and
    rank it like content; with these examples they learn that redundancy is cheap to evict.
    """
    unit = tokenizer(" " + passage, add_special_tokens=False)["input_ids"]
    block = (unit * (n_tokens // len(unit) + 1))[:n_tokens]
    low, high = len(prompt_ids) // 10, len(prompt_ids) - len(prompt_ids) // 10
    ends = [i + 1 for i in range(low, high) if re.search(r"[.!?\n]\s*$", tokenizer.decode(prompt_ids[i]))]
    at = rng.choice(ends) if ends else len(prompt_ids) // 2
    return prompt_ids[:at] + block + prompt_ids[at:]


def tokenize(tokenizer, example: TextExample, settings: Tokenization) -> Example | Skip:
    prompt_ids, (answer_ids, *more_answer_ids) = render(
        tokenizer, example.prompt, [example.answer, *example.more_answers], settings.raw_template
    )
    if len(prompt_ids) < settings.min_prompt_tokens:
        return Skip(example.id, PROMPT_TOO_SHORT)
    if not answer_ids:
        return Skip(example.id, NO_ANSWER)
    prompt_ids = truncate_middle(prompt_ids, settings.max_prompt_tokens - settings.distractor_tokens)
    if settings.distractor_tokens:
        rng = random.Random(example.id)  # the same example gets the same passage and place on resume
        pool = _distractor_passages(settings.distractor_text)
        passage = pool[rng.randrange(len(pool))]
        prompt_ids = insert_repeated_passage(tokenizer, prompt_ids, passage, settings.distractor_tokens, rng)
    return Example(
        example.id,
        prompt_ids,
        answer_ids[: settings.max_answer_tokens],  # the first answer tokens: the ones the prompt shapes most
        tuple(ids[: settings.max_answer_tokens] for ids in more_answer_ids if ids),
    )


@functools.cache
def _distractor_passages(path: str | None) -> list[str]:
    if path is None:
        raise ValueError("distractor_tokens > 0 needs distractor_text (a plain text file)")
    pool = passages(Path(path).read_text(encoding="utf-8", errors="replace"))
    if not pool:
        raise ValueError(f"{path} has no paragraph of 12-60 words to use as a distractor")
    return pool


def examples(
    source: Iterable[TextExample | Skip], tokenizer, settings: Tokenization
) -> Iterator[Example | Skip]:
    """Tokenize a text stream; skips pass through so the caller counts every one."""
    for item in source:
        yield tokenize(tokenizer, item, settings) if isinstance(item, TextExample) else item
