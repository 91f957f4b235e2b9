"""The natural-text tasks: splits, determinism, needle placement, prompt lengths, scoring (benchmark.natural)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.natural import niah
from benchmark.natural.books import split_text, strip_gutenberg
from benchmark.natural.multidoc import load_questions
from benchmark.natural.needles import KINDS, TEMPLATES
from benchmark.natural.scoring import best_subspan_em, score_all_needles, score_needle
from benchmark.natural.splits import HAYSTACK_BOOKS, NQ_QUESTIONS, NQ_TRAIN, TRAIN_BOOKS
from benchmark.tasks import load_task, score


def test_splits_are_disjoint_and_never_train() -> None:
    validation, test = set(HAYSTACK_BOOKS["validation"]), set(HAYSTACK_BOOKS["test"])
    assert validation and test and not validation & test
    assert not (validation | test) & set(TRAIN_BOOKS)
    v, t = set(NQ_QUESTIONS["validation"]), set(NQ_QUESTIONS["test"])
    assert not v & t and not (v | t) & set(NQ_TRAIN)
    assert (min(v), max(v), min(t), max(t)) == (2000, 2299, 2300, 2654)
    statements = {split: {t.statement for t in TEMPLATES[split]} for split in TEMPLATES}
    questions = {split: {t.question for t in TEMPLATES[split]} for split in TEMPLATES}
    assert not statements["validation"] & statements["test"]
    assert not questions["validation"] & questions["test"]
    for split in TEMPLATES:
        assert {t.kind for t in TEMPLATES[split]} == set(KINDS)


def test_strip_gutenberg() -> None:
    text = "\ufeffheader\r\n*** START OF THE BOOK ***\r\nBody.\r\n   *** END OF THE BOOK ***\r\nlicence"
    assert strip_gutenberg(text) == "Body."
    with pytest.raises(ValueError, match="START OF"):
        strip_gutenberg("no markers")


def test_haystack_uses_only_the_split_books(shared_data: Path) -> None:
    for split, books in HAYSTACK_BOOKS.items():
        text = split_text(str(shared_data), split)
        assert "*** START OF" not in text and "*** END OF" not in text
        for book in books:
            body = strip_gutenberg((shared_data / "gutenberg" / f"{book}.txt").read_text("utf-8"))
            assert body[:200] in text
        for other in [*TRAIN_BOOKS, *HAYSTACK_BOOKS["test" if split == "validation" else "validation"]]:
            body = (shared_data / "gutenberg" / f"{other}.txt").read_text("utf-8").replace("\r\n", "\n")
            assert all(body[i : i + 300] not in text for i in range(5000, len(body), len(body) // 7))


def _niah(shared_data: Path, tokenizer, name: str = "niah_text", **kwargs):
    options = dict(data_dir=str(shared_data), tokenizer=tokenizer, length=1500, n=2, seed=3, depth=0.4)
    return load_task(name, **{**options, **kwargs})


def test_niah_deterministic_and_seeded(shared_data: Path, ws_tokenizer) -> None:
    a, b = _niah(shared_data, ws_tokenizer), _niah(shared_data, ws_tokenizer)
    assert [s.prompt for s in a] == [s.prompt for s in b]
    c = _niah(shared_data, ws_tokenizer, seed=4)
    assert [s.prompt for s in a] != [s.prompt for s in c]
    longer = _niah(shared_data, ws_tokenizer, length=3000)  # same needles at every length
    assert [s.answers for s in longer] == [s.answers for s in a]


@pytest.mark.parametrize("split", ["validation", "test"])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 1.0])
def test_niah_needle_once_at_depth(shared_data: Path, ws_tokenizer, split: str, depth: float) -> None:
    (s,) = _niah(shared_data, ws_tokenizer, split=split, depth=depth, n=1, length=2000)
    (needle,) = s.meta["needles"]
    sentence = needle["statement"].format(value=needle["value"])
    assert s.context.count(sentence) == 1
    assert len(re.findall(rf"(?<!\w){re.escape(needle['value'])}(?!\w)", s.context, re.I)) == 1
    assert needle["statement"] in {t.statement for t in TEMPLATES[split]}
    assert abs(s.meta["needle_depth"] - depth) < 0.05
    (start, end) = s.meta["needle_char_spans"][0]
    assert s.prompt[start:end] == sentence
    assert s.meta["split"] == split and s.task == "niah_text"
    before = s.context[: s.context.index(sentence)]
    assert depth == 0.0 and before == "" or re.search(r"([.!?][\"'\u201d\u2019)\]]*|\n)\s*$", before)


def test_niah_lengths_with_a_real_tokenizer(shared_data: Path, smollm2_tokenizer) -> None:
    for length in (2048, 8192):
        for name in ("niah_text", "niah_text_multi"):
            for s in _niah(shared_data, smollm2_tokenizer, name, length=length):
                n_tokens = len(smollm2_tokenizer.encode(s.prompt))
                assert abs(n_tokens - length) <= 0.01 * length


def test_niah_cycles_past_the_split(shared_data: Path, ws_tokenizer) -> None:
    words = len(split_text(str(shared_data), "validation").split())
    (s,) = _niah(shared_data, ws_tokenizer, length=words + 5000, n=1)
    assert abs(len(ws_tokenizer.encode(s.prompt)) - (words + 5000)) <= 0.01 * (words + 5000)


def test_niah_multi_variants(shared_data: Path, ws_tokenizer) -> None:
    (one,) = _niah(shared_data, ws_tokenizer, "niah_text_multi", n=1)
    needles = one.meta["needles"]
    assert len(needles) == niah.NEEDLES_PER_PROMPT == len(one.meta["needle_char_spans"])
    assert len({n["statement"] for n in needles}) == len(needles)
    assert one.answers == [needles[0]["value"]] and needles[0]["depth"] == 0.4
    for n, (start, end) in zip(needles, one.meta["needle_char_spans"], strict=True):
        assert one.prompt[start:end] == n["statement"].format(value=n["value"])
    (every,) = load_task(
        "niah_text_multi_all", data_dir=str(shared_data), tokenizer=ws_tokenizer, length=1500, n=1, seed=3
    )
    assert every.answers == [n["value"] for n in every.meta["needles"]]
    assert [n["depth"] for n in every.meta["needles"]] == sorted(n["depth"] for n in every.meta["needles"])
    assert every.question.count("?") == niah.NEEDLES_PER_PROMPT
    with pytest.raises(ValueError, match="random depths"):
        _niah(shared_data, ws_tokenizer, "niah_text_multi_all")


def test_depth_sweep_and_argument_checks(shared_data: Path, ws_tokenizer) -> None:
    samples = _niah(shared_data, ws_tokenizer, n=3, depth=None)
    assert [s.meta["depth"] for s in samples] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="unknown split 'train'"):
        _niah(shared_data, ws_tokenizer, split="train")
    with pytest.raises(ValueError, match="no splits"):
        load_task("passkey", tokenizer=ws_tokenizer, length=500, n=1, split="test")
    with pytest.raises(ValueError, match="data_dir"):
        load_task("niah_text", tokenizer=ws_tokenizer, length=500, n=1)
    with pytest.raises(ValueError, match="tokenizer and length"):
        load_task("multidoc_qa", data_dir=str(shared_data))


def test_niah_scoring() -> None:
    assert score_needle(" Wandering Pocketwatch.\nMore text", ["wandering pocketwatch"]) == 1.0
    assert score_needle(" March 3, 1901.", ["March 3, 1901"]) == 1.0
    assert score_needle(" 4,821,937", ["4821937"]) == 1.0
    assert score_needle("\n\n  Marzipan!", ["Marzipan"]) == 1.0
    assert score_needle(" 48219370", ["4821937"]) == 0.0  # whole words only
    assert score_needle(" Oswin.\nMarzipan", ["Marzipan"]) == 0.0  # first line only
    assert score_needle("", ["Marzipan"]) == 0.0
    assert score_all_needles("1. Quito\n2. 1234567\n3. no idea", ["Quito", "1234567", "x y", "z"]) == 0.5


def test_multidoc_scoring() -> None:
    # lost-in-the-middle best_subspan_em: normalised substring, articles and punctuation removed
    assert best_subspan_em("It was The Beatles, in 1962.", ["Beatles"]) == 1.0
    assert best_subspan_em("Wilhelm Conrad Röntgen won it", ["Wilhelm Conrad Röntgen"]) == 1.0
    assert best_subspan_em("the u.s. army", ["US Army"]) == 1.0
    assert best_subspan_em("Marie Curie", ["Wilhelm Conrad Röntgen", "Röntgen"]) == 0.0


def test_multidoc_questions_come_from_their_split(shared_data: Path) -> None:
    for split, indices in NQ_QUESTIONS.items():
        questions = load_questions(str(shared_data), split)
        assert [q.index for q in questions] == list(indices)


def test_multidoc_gold_placement_and_distractors(shared_data: Path, ws_tokenizer) -> None:
    pool = {q.text: q.index for q in load_questions(str(shared_data), "test")}
    for depth, gold in ((0.0, 0), (1.0, None), (0.5, None)):
        samples = load_task(
            "multidoc_qa", data_dir=str(shared_data), tokenizer=ws_tokenizer, length=1500, n=3,
            depth=depth, split="test",
        )  # fmt: skip
        for s in samples:
            docs = s.context.split("\n")
            assert len(docs) == s.meta["n_documents"] >= 5
            expected = round(depth * (len(docs) - 1)) if gold is None else gold
            assert s.meta["gold_index"] == expected
            texts = [re.sub(r"^Document \[\d+\]\(Title: .*?\) ", "", d) for d in docs]
            assert [pool[t] for t in texts].count(s.meta["nq_index"]) == 1
            assert pool[texts[expected]] == s.meta["nq_index"]
            assert all(pool[t] in NQ_QUESTIONS["test"] for t in texts)  # distractors from the same split
            assert [d.split("]")[0] for d in docs] == [f"Document [{i}" for i in range(1, len(docs) + 1)]
            start, end = s.meta["needle_char_spans"][0]
            assert s.prompt[start:end] == docs[expected]
            assert [s.prompt[a:b] for a, b in s.meta["document_char_spans"]] == docs
            assert s.meta["document_char_spans"][expected] == (start, end)
            assert s.prompt.startswith("Write a high-quality answer for the given question using only")
            assert s.question.endswith("\nAnswer:")
            assert score("multidoc_qa", s.answers[0], s) == 1.0


def test_multidoc_lengths_and_randomised_gold(shared_data: Path, smollm2_tokenizer) -> None:
    for length in (2048, 16384):
        samples = load_task(
            "multidoc_qa", data_dir=str(shared_data), tokenizer=smollm2_tokenizer, length=length, n=4
        )
        for s in samples:
            n_tokens = len(smollm2_tokenizer.encode(s.prompt))
            assert length - 400 <= n_tokens <= length  # whole documents (~100-300 tokens each)
        if length == 2048:
            assert len({s.meta["gold_index"] for s in samples}) > 1  # random per sample without depth
            again = load_task(
                "multidoc_qa", data_dir=str(shared_data), tokenizer=smollm2_tokenizer, length=length, n=4
            )
            assert [s.prompt for s in again] == [s.prompt for s in samples]


def test_niah_paragraphs_joins_the_books_line_wraps_and_keeps_the_needles(
    shared_data: Path, ws_tokenizer
) -> None:
    wrapped = _niah(shared_data, ws_tokenizer, length=3000)
    joined = _niah(shared_data, ws_tokenizer, "niah_text_paragraphs", length=3000)
    assert [s.answers for s in joined] == [s.answers for s in wrapped]
    for s_wrapped, s_joined in zip(wrapped, joined, strict=True):
        assert s_joined.task == "niah_text_paragraphs" and s_joined.id.startswith("niah_text_paragraphs_")
        inside = re.findall(r"\S[ \t]*\n[ \t]*\S", s_joined.context)  # a line break inside a paragraph
        assert not inside and re.findall(r"\S[ \t]*\n[ \t]*\S", s_wrapped.context)
        assert "\n\n" in s_joined.context  # paragraph breaks stay
        (start, end) = s_joined.meta["needle_char_spans"][0]
        assert s_joined.prompt[start:end] == s_joined.meta["needles"][0]["statement"].format(
            value=s_joined.answers[0]
        )
