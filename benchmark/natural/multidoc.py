"""multidoc_qa: a Natural Questions question with its gold passage among distractors ("Lost in the Middle").

The prompt is that paper's ``qa.prompt``: an instruction, the documents as ``Document [i](Title: t) text``
one per line, then ``Question: q`` and ``Answer:``. Distractors are other questions' gold passages from the
same split, in an order drawn from the seed, skipping any that contain one of the question's answers; a
prompt longer than the split's passages allow (about 40K tokens) draws them again in a new order, so a
distractor may appear more than once (the gold passage never does). Documents are whole: the prompt is at
most ``length`` tokens and within one passage of it. The gold passage's position is ``depth`` (a fraction
of the documents) or, without one, a fraction drawn from the seed (the same at every length).
``meta["document_char_spans"]`` holds every document's span in the prompt, ``needle_char_spans`` the gold one's.
"""

import random
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from pathlib import Path

from benchmark.natural.scoring import normalize_answer
from benchmark.natural.splits import NQ_QUESTIONS, Split
from benchmark.sample import Sample
from benchmark.text import Counter, Tokenizer, iter_jsonl, make_counter, resolve_file

NQ_FILE = "nq-open-oracle.jsonl.gz"
INSTRUCTION = (
    "Write a high-quality answer for the given question using only the provided search results "
    "(some of which might be irrelevant).\n\n"
)
MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class Question:
    index: int  # line number in the NQ file
    question: str
    answers: tuple[str, ...]
    title: str
    text: str  # the gold passage


@cache
def load_questions(data_dir: str, split: Split) -> tuple[Question, ...]:
    """The split's questions, in file order (``data_dir``: the data root, its nq_open folder or the file)."""
    path = resolve_file(Path(data_dir), NQ_FILE, "nq_open")
    wanted = NQ_QUESTIONS[split]
    questions = []
    for index, record in enumerate(iter_jsonl(path)):
        if index in wanted:
            gold = next(c for c in record["ctxs"] if c["isgold"])
            questions.append(
                Question(index, record["question"], tuple(record["answers"]), gold["title"], gold["text"])
            )
    if len(questions) != len(wanted):
        raise ValueError(f"{path} has {len(questions)} of the {split} split's {len(wanted)} questions")
    return tuple(questions)


def document(position: int, title: str, text: str) -> str:
    return f"Document [{position}](Title: {title}) {text}"


def gold_position_weights(n_documents: int) -> list[float]:
    """P(the gold passage is the i-th of ``n_documents``) for a drawn depth: it sits at ``round(f * k)``, ``f``
    uniform in [0, 1), ``k = n_documents - 1`` distractors, so the first and last positions are half as likely."""
    k = n_documents - 1
    if k == 0:
        return [1.0]
    return [0.5 / k] + [1.0 / k] * (k - 1) + [0.5 / k]


def _distractors(asked: Question, pool: tuple[Question, ...], rng: random.Random):
    """Endless distractor passages: the pool in random orders, without the asked one or any holding its
    answers (a passage repeated in the file is used once per order)."""
    answers = [normalize_answer(a) for a in asked.answers]
    usable, seen = [], {asked.text}
    for q in pool:
        if q.text not in seen and not any(a in normalize_answer(q.text) for a in answers):
            usable.append(q)
            seen.add(q.text)
    while True:
        yield from rng.sample(usable, len(usable))


def multidoc_sample(
    question: Question,
    pool: tuple[Question, ...],
    split: Split,
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float | None,
    seed: int,
) -> Sample:
    """The question's gold passage among as many distractors as fit in ``length`` tokens."""
    count = make_counter(tokenizer)
    rng = random.Random(f"multidoc_qa:{split}:{seed}:{question.index}")
    fraction = rng.random() if depth is None else depth
    stream = _distractors(question, pool, rng)
    drawn: list[Question] = []
    suffix = f"\n\nQuestion: {question.question}\nAnswer:"

    def build(k: int) -> tuple[Sample, int]:
        while len(drawn) < k:
            drawn.append(next(stream))
        gold = round(fraction * k)
        docs = [(d.title, d.text) for d in drawn[:k]]
        docs.insert(gold, (question.title, question.text))
        texts = [document(i, t, x) for i, (t, x) in enumerate(docs, 1)]
        context = "\n".join(texts)
        sample = Sample(
            id=f"multidoc_qa_{split}_{question.index}_{length}_{'rand' if depth is None else f'{depth:.3f}'}_{seed}",
            context=context,
            question=suffix,
            answers=list(question.answers),
            task="multidoc_qa",
            max_new_tokens=MAX_NEW_TOKENS,
            prefix=INSTRUCTION,
        )
        # each document starts one "\n" after the previous one ends
        starts = accumulate((len(text) + 1 for text in texts[:-1]), initial=len(INSTRUCTION))
        sample.meta["document_char_spans"] = [
            (a, a + len(text)) for a, text in zip(starts, texts, strict=True)
        ]
        return sample, gold

    # Estimate k from the documents' own counts (boundaries merge at most a token each), then settle it.
    estimate, k = count(INSTRUCTION + suffix) + count(document(1, question.title, question.text) + "\n"), 0
    while True:
        if len(drawn) <= k:
            drawn.append(next(stream))
        estimate += count(document(k + 2, drawn[k].title, drawn[k].text) + "\n")
        if estimate > length:
            break
        k += 1
    sizes: dict[int, int] = {}

    def size(n_docs: int) -> int:
        if n_docs not in sizes:
            sizes[n_docs] = count(build(n_docs)[0].prompt)
        return sizes[n_docs]

    while k > 0 and size(k) > length:
        k -= 1
    while size(k + 1) <= length:
        k += 1
    if size(k) > length:
        raise ValueError(f"{length} tokens cannot hold question {question.index} with its gold passage")
    sample, gold = build(k)
    sample.meta.update(
        split=split,
        nq_index=question.index,
        length=length,
        n_tokens=size(k),
        depth=depth,
        n_documents=k + 1,
        gold_index=gold,
        needle_char_spans=[sample.meta["document_char_spans"][gold]],
        needle_depth=gold / k if k else 0.0,
    )
    return sample


def generate_multidoc_qa(
    data_dir: str,
    split: Split,
    tokenizer: Tokenizer | Counter,
    length: int,
    n: int | None,
    seed: int,
    depth: float | None = None,
) -> list[Sample]:
    """The split's first ``n`` questions (all without ``n``) at ``length`` tokens."""
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    pool = load_questions(data_dir, split)
    return [multidoc_sample(q, pool, split, tokenizer, length, depth, seed) for q in pool[:n]]
