"""benchmark.paired: per-prompt comparison of two runs and its exact McNemar test."""

import json

import pytest

from benchmark.paired import compare, main, mcnemar_exact


def _case(folder, scores: dict[str, float]):
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": i, "score": s, "status": "ok"}) for i, s in scores.items()]
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 3) == pytest.approx(2 * (1 + 8 + 28 + 56) / 256)
    assert mcnemar_exact(4, 4) == 1.0


def test_compare_counts_discordant_prompts(tmp_path):
    ref = _case(tmp_path / "ref", {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0})
    other = _case(tmp_path / "other", {"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0})
    rows = compare([("ref", ref), ("other", other)])
    assert [(r.answered, r.n) for r in rows] == [(2, 4), (3, 4)]
    assert (rows[1].only_reference, rows[1].only_this) == (1, 2)
    assert rows[1].p_value == pytest.approx(mcnemar_exact(1, 2))


def test_compare_refuses_cases_on_other_prompts(tmp_path):
    ref = _case(tmp_path / "ref", {"a": 1.0, "b": 0.0})
    other = _case(tmp_path / "other", {"a": 1.0, "z": 0.0})
    with pytest.raises(ValueError, match="other prompts"):
        compare([("ref", ref), ("other", other)])


def test_shared_prompts_keep_the_prompts_every_case_ran(tmp_path):
    ref = _case(tmp_path / "ref", {"a": 1.0, "b": 1.0, "c": 0.0})
    stopped = _case(tmp_path / "stopped", {"a": 0.0, "c": 1.0})
    rows = compare([("ref", ref), ("stopped", stopped)], shared_prompts=True)
    assert [(r.answered, r.n) for r in rows] == [(1, 2), (1, 2)]
    assert (rows[1].only_reference, rows[1].only_this) == (1, 1)
    elsewhere = _case(tmp_path / "elsewhere", {"z": 1.0})
    with pytest.raises(ValueError, match="share no prompt"):
        compare([("ref", ref), ("elsewhere", elsewhere)], shared_prompts=True)


def test_main_writes_the_table(tmp_path):
    ref = _case(tmp_path / "ref", {"a": 1.0, "b": 0.0})
    other = _case(tmp_path / "other", {"a": 0.0, "b": 1.0})
    out = tmp_path / "paired.md"
    table = main([f"base={ref}", f"new={other}", "--out", str(out)])
    assert out.read_text() == table
    assert "| base (reference) | 1/2 |" in table and "| new | 1/2 | 1 | 1 | 1 |" in table
