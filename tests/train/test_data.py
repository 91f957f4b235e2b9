"""Data sources: every format gives (prompt, answer) pairs; unusable rows are counted by reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import char_tokenizer

from locret.train.data import (
    Example,
    Skip,
    SkipLog,
    TextExample,
    Tokenization,
    examples,
    passages,
    read_rows,
    row_examples,
    text_examples,
    tokenize,
    truncate_middle,
)

# ../shared beside the repository (CI has it; a plain clone does not, and the test then skips).
SQUALITY = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "squality" / "train.jsonl")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_formats(tmp_path: Path) -> None:
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "sys"},
                {"from": "human", "value": "P1"},
                {"from": "gpt", "value": "A1"},
                {"from": "human", "value": "P2"},
            ]
        },
        {"conversations": [{"role": "user", "content": "P2"}, {"role": "assistant", "content": "A2"}]},
        {"instruction": "Do it", "input": "ctx", "output": "done"},
        {"instruction": "Do it", "input": "", "output": "done"},
        {
            "document": "Story.",
            "questions": [
                {
                    "question_text": "Q1?",
                    "question_number": 1,
                    "responses": [{"response_text": "R1"}, {"response_text": "x"}],
                },
                {"question_text": "Q2?", "question_number": 2, "responses": []},
            ],
        },
    ]
    got = list(text_examples(str(write_jsonl(tmp_path / "mixed.jsonl", rows))))
    assert got == [
        TextExample("000000", "P1", "A1"),
        TextExample("000001", "P2", "A2"),
        TextExample("000002", "Do it\n\nctx", "done"),
        TextExample("000003", "Do it", "done"),
        TextExample("000004-q1", "Story.\n\nQ1?", "R1"),
        Skip("000004-q2", "no_answer"),
    ]


def test_json_file_through_datasets(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}] * 2))
    assert [example.prompt for example in text_examples(str(path), "alpaca")] == ["a", "a"]


def test_squality_one_example_per_question() -> None:
    if not Path(SQUALITY).is_file():
        pytest.skip("SQuALITY copy not present")
    first = list(text_examples(SQUALITY, "squality"))[:5]
    row = next(row for _, row in read_rows(SQUALITY))
    assert [e.id for e in first] == [f"000000-q{q['question_number']}" for q in row["questions"]]
    assert first[0].prompt.endswith(row["questions"][0]["question_text"])
    assert first[0].answer == row["questions"][0]["responses"][0]["response_text"]


def test_squality_all_keeps_every_reference_answer() -> None:
    row = {
        "document": "A story.",
        "questions": [
            {"question_number": 1, "question_text": "Q?", "responses": [{"response_text": t} for t in "abc"]},
            {"question_number": 2, "question_text": "R?", "responses": [{"response_text": "d"}, {}]},
        ],
    }
    first, second = row_examples(0, row, "squality-all")
    assert (first.answer, first.more_answers) == ("a", ("b", "c"))
    assert (second.answer, second.more_answers) == ("d", ())  # an empty response is no answer
    assert row_examples(0, row, "squality")[0].more_answers == ()
    settings = Tokenization(max_prompt_tokens=64, max_answer_tokens=2)
    example = tokenize(char_tokenizer(), TextExample("x", "q" * 20, "abcdef", ("gh", "ijkl")), settings)
    assert [char_tokenizer().decode(ids) for ids in example.answers] == ["ab", "gh", "ij"]


def test_squality_longalpaca_frames_the_story_as_longalpaca_frames_papers() -> None:
    row = {
        "document": "  A story.\n",
        "questions": [{"question_number": 1, "question_text": "Q?", "responses": [{"response_text": "a"}]}],
    }
    (framed,) = row_examples(0, row, "squality-longalpaca")
    assert framed.prompt == (
        "Below is a story. Memorize the story and answer my question after the story.\n"
        " The story begins. \nA story.\n Now the story ends. \nQ?"
    )
    assert framed.answer == "a"
    assert row_examples(0, row, "squality")[0].prompt == "A story.\n\nQ?"


def test_unusable_rows_counted(tmp_path: Path) -> None:
    rows = [
        "[1, 2]",
        "{broken",
        {"instruction": "", "output": "x"},
        {"instruction": "p", "output": " "},
        {"conversations": "oops"},
        {"unknown": 1},
        {"instruction": "p", "output": "fine"},
    ]
    log = SkipLog()
    stream = examples(
        text_examples(str(write_jsonl(tmp_path / "bad.jsonl", rows))),
        char_tokenizer(),
        Tokenization(min_prompt_tokens=1, raw_template=True),
    )
    kept = []
    for item in stream:
        log.add(item) if isinstance(item, Skip) else kept.append(item)
    assert [e.id for e in kept] == ["000006"]
    assert log.counts() == {"no_answer": 1, "no_prompt": 1, "unknown_format": 1, "unreadable": 3}
    log.add(Skip("000001", "unreadable"))  # seen again after a resume: not counted twice
    assert log.counts()["unreadable"] == 3


def test_truncation_keeps_both_ends() -> None:
    assert truncate_middle(list(range(10)), 4) == [0, 1, 8, 9]
    assert truncate_middle(list(range(10)), 5) == [0, 1, 7, 8, 9]
    assert truncate_middle(list(range(3)), 5) == [0, 1, 2]
    settings = Tokenization(max_prompt_tokens=30, max_answer_tokens=3, min_prompt_tokens=5)
    example = tokenize(char_tokenizer(), TextExample("x", "q" * 50 + "?", "abcdef"), settings)
    assert isinstance(example, Example) and len(example.prompt_ids) == 30 and len(example.answer_ids) == 3
    text = char_tokenizer().decode(example.prompt_ids)
    assert text.startswith("<|user|>qq") and text.endswith("q?<|end|><|assistant|>")
    assert char_tokenizer().decode(example.answer_ids) == "abc"
    short = tokenize(char_tokenizer(), TextExample("y", "hi", "a"), Tokenization(min_prompt_tokens=25))
    assert short == Skip("y", "prompt_too_short")  # 24 tokens with the template


def test_passages_are_paragraphs_of_usable_length() -> None:
    text = "Too short.\n\n" + "one two three " * 5 + "\nstill the same paragraph.\n\n  \n" + "word " * 100
    assert passages(text) == [" ".join(("one two three " * 5 + "still the same paragraph.").split())]


def test_repeated_passage_inserted_whole_at_a_sentence_end(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("Preface.\n\n" + "The river ran by the old mill all day long. " * 2 + "\n\nEnd.")
    document = "".join(f"Sentence number {i} ends here. " for i in range(20))
    settings = Tokenization(
        max_prompt_tokens=400, max_answer_tokens=8, distractor_tokens=120, distractor_text=str(book)
    )
    tokenizer = char_tokenizer()
    first = tokenize(tokenizer, TextExample("a", document, "answer"), settings)
    assert tokenize(tokenizer, TextExample("a", document, "answer"), settings) == first  # resumable
    assert len(first.prompt_ids) == 400
    text = tokenizer.decode(first.prompt_ids)
    unit = " The river ran by the old mill all day long. The river ran by the old mill all day long."
    block = (unit * 2)[:120]
    at = text.index(block)
    assert text[:at].endswith("ends here.")  # a sentence end, not mid-word
    without = text[:at] + text[at + 120 :]
    plain = tokenize(tokenizer, TextExample("a", document, "answer"), Tokenization(400 - 120, 8))
    assert without == tokenizer.decode(plain.prompt_ids)  # everything else unchanged, in order


def test_distractor_without_text_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs distractor_text"):
        tokenize(char_tokenizer(), TextExample("a", "x" * 50, "y"), Tokenization(40, 4, 5, False, 10))
