"""The task registry: names, argument checks and score dispatch."""

from pathlib import Path

import pytest

from benchmark.tasks import TASKS, load_task, score


def test_expected_names_registered() -> None:
    expected = {
        "passkey", "number_string", "kv_retrieval", "ib_passkey", "ib_number_string",
        "ib_kv_retrieval", "longbook_choice_eng", "longbook_qa_eng", "longbook_sum_eng",
        "longdialogue_qa_eng", "code_debug", "math_find", "leval_coursera", "leval_gsm100",
        "leval_quality", "leval_sci_fi", "leval_topic_retrieval_longchat", "leval_tpo",
        "litm_kv", "litm_kv_140", "longchat_lines_200", "longchat_lines_600",
        "niah_text", "niah_text_multi", "niah_text_multi_all", "niah_text_paragraphs", "multidoc_qa",
    }  # fmt: skip
    assert set(TASKS) == expected


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'nope'; valid tasks: .*leval_quality"):
        load_task("nope")
    with pytest.raises(ValueError, match="passkey"):
        score("nope", "x", None)  # type: ignore[arg-type]


def test_generated_task_roundtrip(ws_tokenizer) -> None:
    samples = load_task("passkey", tokenizer=ws_tokenizer, length=600, n=2, seed=4, depth=0.3)
    assert len(samples) == 2 and all(s.task == "passkey" for s in samples)
    s = samples[0]
    assert score(s.task, f"The pass key is {s.answers[0]}.", s) == 1.0
    assert score(s.task, "The pass key is 1.", s) == 0.0


def test_argument_checks(ws_tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs tokenizer, length and n"):
        load_task("kv_retrieval", tokenizer=ws_tokenizer, n=1)
    with pytest.raises(ValueError, match="depth"):
        load_task("leval_quality", data_dir=str(tmp_path), depth=0.5)
    with pytest.raises(ValueError, match="needle"):
        load_task("longchat_lines_200", data_dir=str(tmp_path), length=1000)
    with pytest.raises(ValueError, match="data_dir"):
        load_task("litm_kv")
    with pytest.raises(ValueError, match="encode and decode"):
        load_task("leval_tpo", data_dir=str(tmp_path), length=100, tokenizer=len)


def test_file_tasks_from_shared_data(shared_data: Path) -> None:
    for name in ("leval_tpo", "litm_kv", "longchat_lines_600"):
        samples = load_task(name, data_dir=str(shared_data), n=3)
        assert len(samples) == 3 and all(s.task == name for s in samples)
        for s in samples:
            assert score(name, s.answers[0], s) == 1.0
    (s,) = load_task("litm_kv_140", data_dir=str(shared_data), n=1, depth=0.5)
    assert s.meta["gold_index"] == 70
