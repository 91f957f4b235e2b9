"""Training examples built from plain text, sized in tokens: ``reconstruct`` and ``nq-multidoc``.

``reconstruct`` (self-supervised): a window of a plain text is the prompt, followed by an instruction to
repeat it, and the answer is the window itself. With ``--label-kind attention`` the labels are then what
KVzip scores (the attention each token gets while the frozen model repeats the context), learnable from
any text with no question at all. ``nq-multidoc``: a Natural Questions train question's gold passage
among other train questions' gold passages, the question last, its first short answer as the answer.

Both need the tokenizer to size prompts in tokens, so they are separate from ``data.text_examples``. Every
choice is drawn from ``random.Random(f"{seed}-{index}")``, so example ``i`` is the same whatever the count
(``--max-examples`` may grow on resume) and on every run.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import itertools
import json
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from .data import TextExample

RECONSTRUCT_INSTRUCTION = "Repeat the text above word for word."
# Natural Questions (nq-open-oracle.jsonl.gz, file order): questions 0-1999 are the training split; the
# rest are validation and test questions and never enter training data (SPLITS.md).
NQ_TRAIN_QUESTIONS = range(0, 2000)
NQ_FRAME = (
    "Below are {count} passages from Wikipedia. One of them contains what the question after them asks.\n\n"
    "{passages}\n\nQuestion: {question}\nReply with the answer only."
)
GUTENBERG_START = re.compile(r"\*\*\*\s*START OF[^\n]*\n")
GUTENBERG_END = re.compile(r"\*\*\*\s*END OF")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Prompt sizes in tokens (drawn uniformly from ``[min_tokens, max_tokens]`` per example) and the seed:
    for ``reconstruct`` the passage's length, for ``nq-multidoc`` the documents' total length."""

    min_tokens: int = 1024
    max_tokens: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 0 < min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")


def normalise_text(text: str) -> str:
    """Paragraphs (blank-line separated) with their line wrapping joined into single spaces."""
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's ``*** START OF`` and ``*** END OF`` lines, if it has them."""
    start = GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = GUTENBERG_END.search(text)
    return text[: end.start()] if end else text


def nq_rows(path: str | Path) -> list[dict]:
    """The Natural Questions rows of the training split, in file order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for _, line in zip(NQ_TRAIN_QUESTIONS, lines, strict=False)]
    if not rows or "ctxs" not in rows[0] or "question" not in rows[0]:
        raise ValueError(f"{path} is not a Natural Questions file with 'question', 'answers' and 'ctxs'")
    return rows


def nq_passage(row: dict) -> str:
    gold = next((c for c in row["ctxs"] if c.get("isgold")), row["ctxs"][0])
    return f"{gold['title']}\n{' '.join(gold['text'].split())}"


def plain_documents(path: str | Path) -> list[str]:
    """The documents of one source, normalised: a plain-text book (Gutenberg header and footer removed), the
    stories of a SQuALITY ``.jsonl``, or the training questions' gold passages of a Natural Questions file
    (one document of them all, one passage per paragraph)."""
    path = Path(path)
    if path.name.endswith(".jsonl.gz"):
        return ["\n\n".join(nq_passage(row) for row in nq_rows(path))]
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines if line.strip()]
        if not rows or any("document" not in row for row in rows):
            raise ValueError(f"{path}: every row of a .jsonl source needs a 'document' (SQuALITY form)")
        return [normalise_text(row["document"]) for row in rows]
    if not path.is_file():
        raise FileNotFoundError(f"no such text file: {path}")
    return [normalise_text(strip_gutenberg(path.read_text(encoding="utf-8", errors="replace")))]


@dataclasses.dataclass
class _Document:
    text: str
    offsets: list[tuple[int, int]]  # each token's character span


def _tokenized(tokenizer, documents: Sequence[str]) -> list[_Document]:
    encoded = tokenizer(list(documents), add_special_tokens=False, return_offsets_mapping=True)
    return [
        _Document(text, [tuple(span) for span in spans])
        for text, spans in zip(documents, encoded["offset_mapping"], strict=True)
        if spans
    ]


def passage_window(document: _Document, n_tokens: int, rng: random.Random) -> str:
    """About ``n_tokens`` tokens of ``document`` from a random place, starting at a sentence or paragraph
    start and ending at a sentence end where the window has one (so it reads as ordinary prose)."""
    count = len(document.offsets)
    start = rng.randrange(max(count - n_tokens, 0) + 1)
    end = min(start + n_tokens, count)
    text = document.text[document.offsets[start][0] : document.offsets[end - 1][1]]
    if start > 0:
        opening = re.search(r"(?<=[.!?])\s+(?=\S)|\n\n", text[: len(text) // 4])
        text = text[opening.end() :] if opening else text
    if end < count:
        closings = list(re.finditer(r"[.!?][\"'”’)]*(?=\s)", text[len(text) * 3 // 4 :]))
        text = text[: len(text) * 3 // 4 + closings[-1].end()] if closings else text
    return text.strip()


def reconstruct_examples(
    sources: Sequence[str | Path], tokenizer, sampling: Sampling
) -> Iterator[TextExample]:
    """Repetition examples without end: a source chosen uniformly, a document of it with probability
    proportional to its length, a window of ``[min_tokens, max_tokens]`` tokens of that document."""
    corpora = [_tokenized(tokenizer, plain_documents(source)) for source in sources]
    for source, documents in zip(sources, corpora, strict=True):
        if not documents:
            raise ValueError(f"{source} holds no text")
    cumulative = [_cumulative([len(d.offsets) for d in documents]) for documents in corpora]
    for index in itertools.count():
        rng = random.Random(f"{sampling.seed}-{index}")
        which = rng.randrange(len(corpora))
        point = rng.randrange(cumulative[which][-1])
        document = corpora[which][bisect.bisect_right(cumulative[which], point)]
        passage = passage_window(document, rng.randint(sampling.min_tokens, sampling.max_tokens), rng)
        yield TextExample(f"rc{index:06d}", f"{passage}\n\n{RECONSTRUCT_INSTRUCTION}", passage)


def _cumulative(lengths: Sequence[int]) -> list[int]:
    out, total = [], 0
    for length in lengths:
        total += length
        out.append(total)
    return out


def nq_multidoc_examples(path: str | Path, tokenizer, sampling: Sampling) -> Iterator[TextExample]:
    """One example per training question, in order: its gold passage at a random place among other
    training questions' gold passages (none containing one of its answers), sized to a drawn token count."""
    rows = nq_rows(path)
    texts = [nq_passage(row) for row in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    for index, row in enumerate(rows):
        rng = random.Random(f"{sampling.seed}-{index}")
        target = rng.randint(sampling.min_tokens, sampling.max_tokens)
        answers = [a.lower() for a in row["answers"] if a.strip()]
        others = [j for j in range(len(rows)) if j != index]
        rng.shuffle(others)
        chosen, total = [], lengths[index]
        for j in others:
            if total >= target:
                break
            if any(answer in texts[j].lower() for answer in answers):
                continue  # a distractor must not answer the question too
            chosen.append(j)
            total += lengths[j]
        chosen.insert(rng.randint(0, len(chosen)), index)
        passages = "\n\n".join(f"Passage {n}: {texts[j]}" for n, j in enumerate(chosen, 1))
        prompt = NQ_FRAME.format(count=len(chosen), passages=passages, question=row["question"].strip() + "?")
        yield TextExample(f"nq{index:05d}", prompt, row["answers"][0])
