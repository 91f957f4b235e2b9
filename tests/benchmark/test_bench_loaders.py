"""Loaders on small jsonl files written here, and on ../shared/data when present."""

import gzip
import json
from pathlib import Path

import pytest

from benchmark.infinite_bench.loader import load_infinite_bench
from benchmark.leval.loader import load_leval
from benchmark.retrieval.loader import load_litm_kv, load_longchat_lines
from benchmark.text import make_counter, truncate_tokens


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_infinite_bench_passkey_file(tmp_path: Path) -> None:
    context = "noise " * 50 + "The pass key is 12345. Remember it. 12345 is the pass key.\n"
    records = [
        {
            "id": i,
            "context": context,
            "input": "What is the pass key?",
            "answer": ["12345"],
        }
        for i in range(3)
    ]
    _write_jsonl(tmp_path / "passkey.jsonl", records)
    samples = load_infinite_bench("passkey", str(tmp_path), n=2)
    assert [s.id for s in samples] == ["passkey_0", "passkey_1"]
    s = samples[0]
    assert s.context == context and s.answers == ["12345"] and s.max_new_tokens == 6
    assert s.prompt == (
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize"
        " them. I will quiz you about the important information there.\n\n"
        + context
        + "\n\nWhat is the pass key?"
    )


def test_infinite_bench_choice_math_and_code(tmp_path: Path) -> None:
    _write_jsonl(
        tmp_path / "longbook_choice_eng.jsonl",
        [
            {
                "id": 7,
                "context": "BOOK",
                "input": "Who?",
                "answer": ["Bob"],
                "options": ["Al", "Bob", "Cy", "Di"],
            }
        ],
    )
    (s,) = load_infinite_bench("longbook_choice_eng", str(tmp_path / "longbook_choice_eng.jsonl"))
    assert s.answers == ["Bob", "B"]
    assert s.question.startswith("\n\nQuestion: Who?\n\nOnly one of the following options")
    assert s.question.endswith("A. Al\nB. Bob\nC. Cy\nD. Di")

    _write_jsonl(
        tmp_path / "math_find.jsonl",
        [
            {
                "context": "[1, 5, 3]",
                "input": "What is The largest number in the list?",
                "answer": 5,
            }
        ],
    )
    (m,) = load_infinite_bench("math_find", str(tmp_path))
    assert m.prefix == "What is the largest number in the following list?\n\n"
    assert m.answers == ["5"] and m.max_new_tokens == 3

    code = {
        "context": "def f(): pass",
        "input": "",
        "answer": "g",
        "options": ["f", "g", "h", "i"],
    }
    _write_jsonl(tmp_path / "code_debug.jsonl", [code])
    (c,) = load_infinite_bench("code_debug", str(tmp_path))
    assert c.answers == ["g", "B"]


def test_infinite_bench_middle_truncation(tmp_path: Path, ws_tokenizer) -> None:
    context = " ".join(f"w{i}" for i in range(1000))
    _write_jsonl(
        tmp_path / "longbook_qa_eng.jsonl",
        [{"context": context, "input": "Why?", "answer": ["because"]}],
    )
    (s,) = load_infinite_bench("longbook_qa_eng", str(tmp_path), tokenizer=ws_tokenizer, max_tokens=200)
    count = make_counter(ws_tokenizer)
    assert count(s.prompt) == 200
    words = s.context.split()
    assert words[0] == "w0" and words[-1] == "w999"
    assert "w500" not in words


def test_truncate_tokens_head_and_middle(ws_tokenizer) -> None:
    text = "a b c d e f g h"
    assert truncate_tokens(text, 4, ws_tokenizer) == "a b g h"
    assert truncate_tokens(text, 3, ws_tokenizer, keep="head") == "a b c"
    assert truncate_tokens(text, 100, ws_tokenizer) == text


def test_hub_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="data_dir"):
        load_infinite_bench("passkey", n=1)
    with pytest.raises(RuntimeError, match="data_dir"):
        load_leval("quality", n=1)


def test_unknown_benchmark_tasks() -> None:
    with pytest.raises(ValueError, match="valid: passkey"):
        load_infinite_bench("nope", "x")
    with pytest.raises(ValueError, match="valid: coursera"):
        load_leval("nope", "x")


def test_leval_file(tmp_path: Path, ws_tokenizer) -> None:
    doc = {
        "input": "DOC " * 100,
        "instructions": ["Which?\nA. x\nB. y", "Which one of these two?\nA. x\nB. y"],
        "outputs": ["(B) y", "A"],
        "source": "quality_raw",
        "evaluation": "exam",
    }
    _write_jsonl(tmp_path / "quality.jsonl", [doc, doc])
    samples = load_leval("quality", str(tmp_path))
    assert len(samples) == 4
    assert [s.answers for s in samples[:2]] == [["B"], ["A"]]
    s = samples[0]
    assert s.task == "leval_quality" and s.context == doc["input"]
    assert s.prefix.endswith(
        "when answering. For other questions, please directly give the"
        " concise and accurate answer.\n\nDocument is as follows. "
    )
    assert s.question == (
        " \nQuestion: Which?\nA. x\nB. y.  Please directly give the answer without any"
        " additional output or explanation \nAnswer:"
    )
    (cut,) = load_leval("quality", str(tmp_path), n=1, tokenizer=ws_tokenizer, max_tokens=80)
    assert len(ws_tokenizer.encode(cut.prompt)) <= 80
    assert cut.context.startswith("DOC DOC")
    # Questions of different lengths on one document: cut the same way, each prompt within the limit.
    both = load_leval("quality", str(tmp_path), n=2, tokenizer=ws_tokenizer, max_tokens=80)
    assert len({len(s.question) for s in both}) == 2 and both[0].context == both[1].context
    assert max(len(ws_tokenizer.encode(s.prompt)) for s in both) <= 80


def test_leval_gsm_and_sci_fi_answers(tmp_path: Path) -> None:
    _write_jsonl(
        tmp_path / "gsm100.jsonl",
        [
            {
                "input": "Q: 1+1? The answer is 2.",
                "instructions": ["Question: 3+4?"],
                "outputs": ["7"],
            }
        ],
    )
    (g,) = load_leval("gsm100", str(tmp_path))
    assert g.answers == ["7"] and g.question == "\n\nQuestion: 3+4?"
    _write_jsonl(
        tmp_path / "sci_fi.jsonl",
        [
            {
                "input": "story",
                "instructions": ["Is it so?"],
                "outputs": ["True [fact: False]"],
            }
        ],
    )
    (f,) = load_leval("sci_fi", str(tmp_path))
    assert f.answers == ["True"] and f.meta["fact"] == "False"


def test_litm_kv_file_and_depth(tmp_path: Path) -> None:
    pairs = [[f"k{i}", f"v{i}"] for i in range(5)]
    record = {"ordered_kv_records": pairs, "key": "k3", "value": "v3"}
    path = tmp_path / "kv-retrieval-75_keys.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    (s,) = load_litm_kv(str(tmp_path))
    assert s.prompt == (
        "Extract the value corresponding to the specified key in the JSON object below.\n\n"
        'JSON data:\n{"k0": "v0",\n "k1": "v1",\n "k2": "v2",\n "k3": "v3",\n "k4": "v4"}'
        '\n\nKey: "k3"\nCorresponding value:'
    )
    assert s.meta["gold_index"] == 3
    (first,) = load_litm_kv(str(path), depth=0.0)
    assert first.context.startswith('JSON data:\n{"k3": "v3",')
    (last,) = load_litm_kv(str(path), depth=1.0)
    assert last.context.endswith('"k3": "v3"}')


def test_longchat_lines_json_in_json(tmp_path: Path) -> None:
    prompt = (
        "Below is a record. Now the record start:\n\n"
        "line a-b: REGISTER_CONTENT is <11>\nline c-d: REGISTER_CONTENT is <22>\n"
        "\n\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line c-d?"
        " I need the number. "
    )
    record = {
        "random_idx": "('c-d', 1)",
        "expected_number": 22,
        "num_lines": 2,
        "correct_line": "'line c-d: REGISTER_CONTENT is <22>\\n'",
        "prompt": json.dumps(prompt),
    }
    _write_jsonl(tmp_path / "2_lines.jsonl", [record])
    (s,) = load_longchat_lines(str(tmp_path), num_lines=2)
    assert s.prompt == prompt
    assert s.context.startswith("line a-b") and "line c-d" not in s.question.split("line c-d?")[0]
    assert s.question.startswith("\n\nNow the record is over.")
    assert s.answers == ["22"]
    assert s.meta["line"] == "c-d" and s.meta["correct_line"].endswith("<22>\n")


@pytest.mark.parametrize(
    ("task", "count"),
    [
        ("coursera", 172),
        ("gsm100", 100),
        ("quality", 202),
        ("sci_fi", 64),
        ("topic_retrieval_longchat", 150),
        ("tpo", 269),
    ],
)
def test_shared_leval(shared_data: Path, task: str, count: int) -> None:
    samples = load_leval(task, str(shared_data))
    assert len(samples) == count
    for s in samples:
        assert s.answers[0] and s.context and s.question
        assert s.context not in s.question
        if task in ("quality", "tpo"):
            assert s.answers[0] in "ABCD" and len(s.answers[0]) == 1
        if task == "coursera":
            assert set(s.answers[0]) <= set("ABCD")
        if task == "gsm100":
            assert s.answers[0].isdigit()
        if task == "sci_fi":
            assert s.answers[0] in ("True", "False")


def test_shared_retrieval(shared_data: Path) -> None:
    for num_keys in (75, 140):
        samples = load_litm_kv(str(shared_data), num_keys=num_keys, n=20)
        for s in samples:
            assert s.meta["num_keys"] == num_keys
            assert f'"{s.answers[0]}"' in s.context
            assert s.answers[0] not in s.question
    for num_lines in (200, 600):
        samples = load_longchat_lines(str(shared_data), num_lines=num_lines)
        assert len(samples) == 50
        for s in samples:
            assert s.meta["correct_line"].strip() in s.context
            assert f"line {s.meta['line']}?" in s.question
            assert f"<{s.answers[0]}>" not in s.question
            assert s.context.count("\n") + 1 == num_lines
