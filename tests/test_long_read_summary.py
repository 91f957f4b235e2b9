import json

import pytest

from benchmark import long_read_summary

MIB = 2**20


def fake_run(folder, depth, correct):
    folder.mkdir()
    records = [
        {
            "tokens_read": 8192,
            "prefill_tokens_per_second": 800.0,
            "rss_bytes": 900 * MIB,
            "peak_rss_bytes": 1000 * MIB,
            "cache_bytes": 23 * MIB,
        },
        {
            "tokens_read": 65536,
            "prefill_tokens_per_second": 760.0,
            "rss_bytes": 1040 * MIB,
            "peak_rss_bytes": 1050 * MIB,
            "cache_bytes": 23 * MIB,
        },
    ]
    answers = [
        {"kind": "passkey", "reply": " 12345.", "expected": "12345", "correct": correct},
        {"kind": "filler", "reply": " blue.", "expected": "blue", "correct": True},
    ]
    result = {
        "tokens": 65536,
        "machine": "test CPU",
        "command": f"python -m benchmark.long_read --depth {depth}",
        "settings": {"depth": depth},
        "records": records,
        "read_seconds": 82.0,
        "last_over_first_speed": 0.95,
        "read_peak_rss_bytes": 1050 * MIB,
        "answers": answers,
    }
    (folder / "long_read.json").write_text(json.dumps(result))


def test_summary_tables_every_run_and_writes_a_plot(tmp_path):
    fake_run(tmp_path / "d10", 0.1, True)
    fake_run(tmp_path / "d90", 0.9, False)
    out = tmp_path / "summary"
    long_read_summary.main([str(tmp_path / "d10"), str(tmp_path / "d90"), "--out", str(out)])
    text = (out / "summary.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| d")]
    assert len(rows) == 2
    assert "| 10% |" in rows[0] and "2/2" in rows[0] and "1.4 min" in rows[0]
    # the read's peak over the peak while reading the first 8K, not over the RSS at 8K (900 MiB)
    assert "1050 / 1000 MiB (1.050; 900 MiB)" in rows[0]
    assert "| 90% |" in rows[1] and "1/2" in rows[1] and "not recorded" in rows[1]
    assert (out / "summary.png").stat().st_size > 0
    assert json.loads((out / "d90.json").read_text())["settings"]["depth"] == 0.9


def test_an_unfinished_run_is_an_error(tmp_path):
    (tmp_path / "running").mkdir()
    with pytest.raises(FileNotFoundError, match="finished"):
        long_read_summary.main([str(tmp_path / "running"), "--out", str(tmp_path / "out")])
