"""Plain-text formats: reconstruct (repeat a passage) and nq-multidoc (a gold passage among distractors)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from train_helpers import char_tokenizer

from locret.train.data import text_examples
from locret.train.natural_data import (
    NQ_TRAIN_QUESTIONS,
    RECONSTRUCT_INSTRUCTION,
    Sampling,
    nq_multidoc_examples,
    plain_documents,
    reconstruct_examples,
)

BOOK = (
    "The Project Gutenberg eBook of Nothing\n\nLICENCE HEADER TEXT.\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK NOTHING ***\n\n"
    + "\n\n".join(
        f"Paragraph {i} begins here.\nIt wraps over lines as books do. It ends now." for i in range(40)
    )
    + "\n\n*** END OF THE PROJECT GUTENBERG EBOOK NOTHING ***\n\nLICENCE FOOTER TEXT."
)


def extra(i: int) -> str:
    """Every third passage also holds the answers to questions 0 and 1: never a distractor for them."""
    return ", not ans0x or ans1x," if i % 3 == 2 else ""


def nq_file(tmp_path: Path, count: int) -> Path:
    rows = [
        {
            "question": f"what is item {i}",
            "answers": [f"ans{i}x"],
            "ctxs": [
                {"title": f"T{i}", "text": f"Item {i} is ans{i}x{extra(i)} in this text.", "isgold": True}
            ],
        }
        for i in range(count)
    ]
    path = tmp_path / "nq.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_plain_documents_strip_gutenberg_and_join_wrapped_lines(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(BOOK)
    (document,) = plain_documents(tmp_path / "book.txt")
    assert "LICENCE" not in document and "START OF" not in document and "END OF" not in document
    assert document.startswith("Paragraph 0 begins here. It wraps") and "\n\nParagraph 1 " in document
    stories = tmp_path / "stories.jsonl"
    stories.write_text(
        json.dumps({"document": "One\nstory."}) + "\n" + json.dumps({"document": "Two."}) + "\n"
    )
    assert plain_documents(stories) == ["One story.", "Two."]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "no document"}) + "\n")
    with pytest.raises(ValueError, match="'document'"):
        plain_documents(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        plain_documents(tmp_path / "missing.txt")


def test_reconstruct_repeats_a_seeded_window(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(BOOK)
    tokenizer, sources = char_tokenizer(), [tmp_path / "book.txt"]
    sampling = Sampling(120, 200, seed=3)

    def first(count: int, sampling: Sampling = sampling) -> list:
        return list(itertools.islice(reconstruct_examples(sources, tokenizer, sampling), count))

    five = first(5)
    assert first(5) == five and five != first(5, Sampling(120, 200, seed=4))
    for example in five:
        assert example.prompt == f"{example.answer}\n\n{RECONSTRUCT_INSTRUCTION}"
        assert 60 <= len(example.answer) <= 200  # characters = tokens here; cut back to sentence ends
        assert example.answer[0].isupper() and example.answer.endswith(".")
        assert example.answer in " ".join(BOOK.split()).replace("now. Paragraph", "now.\n\nParagraph")
    assert len({example.answer for example in five}) == 5
    with pytest.raises(ValueError, match="format 'reconstruct' is sized in tokens"):
        next(text_examples(str(sources[0]), "reconstruct"))


def test_reconstruct_draws_from_every_source(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(BOOK)
    sources = [tmp_path / "book.txt", nq_file(tmp_path, 30)]
    stream = reconstruct_examples(sources, char_tokenizer(), Sampling(80, 80))
    answers = [e.answer for e in itertools.islice(stream, 12)]
    assert any("Paragraph" in a for a in answers) and any("Item" in a for a in answers)


def test_nq_multidoc_uses_training_questions_only(tmp_path: Path) -> None:
    count = NQ_TRAIN_QUESTIONS.stop + 5
    path = nq_file(tmp_path, count)
    sampling = Sampling(150, 400, seed=1)
    stream = nq_multidoc_examples(path, char_tokenizer(), sampling)
    first = [next(stream) for _ in range(30)]
    assert first[0].id == "nq00000" and first[0].answer == "ans0x"
    positions = set()
    for index, example in enumerate(first):
        gold = f"Item {index} is ans{index}x"
        assert example.prompt.count(gold) == 1 and example.prompt.count(f"ans{index}x") == 1
        assert example.prompt.endswith(f"Question: what is item {index}?\nReply with the answer only.")
        passages = [p for p in example.prompt.split("\n\n") if p.startswith("Passage ")]
        positions.add(next(n for n, p in enumerate(passages) if gold in p) / len(passages))
        sized = sum(len(p.split(": ", 1)[1]) for p in passages)  # what the sampling counts
        assert 150 <= sized < 400 + max(len(p) for p in passages)  # the passage that crossed the target
    assert len(positions) > 5  # the gold passage moves
    rest = list(stream)
    assert len(first) + len(rest) == NQ_TRAIN_QUESTIONS.stop
    assert not any(f"Item {i} " in e.prompt for e in first + rest for i in range(2000, count))
    again = nq_multidoc_examples(path, char_tokenizer(), sampling)
    assert [next(again) for _ in range(3)] == first[:3]
