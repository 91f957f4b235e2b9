"""``benchmark.rope_speed`` runs and prints one row per dtype and tensor."""

from benchmark import rope_speed


def test_rope_speed_prints_every_row(capsys):
    rope_speed.main(["--calls", "1"])
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| bfloat16") or line.startswith("| float32")
    ]
    assert len(rows) == 4
    # the ratio column, to three significant digits: above 0 even when a loaded machine slows one side
    # (two decimals printed 0.00 once, beside a benchmark process)
    assert all(float(row.split("|")[-2]) > 0 for row in rows)
