"""One table and one plot over several ``benchmark.long_read`` runs (for example the pass key at three depths).

    python -m benchmark.long_read_summary runs/long_read/1m_d10 runs/long_read/1m_d50 runs/long_read/1m_d90 \
        --out benchmark/results/long_read_1m_depths

Reads each run's ``long_read.json`` and writes ``summary.md`` (read time, speed along the input, memory, every
answer) and ``summary.png`` (segment tok/s and peak process RSS so far against tokens read, one line per run,
measured points only) under ``--out``, and copies each run's JSON there as ``<run folder name>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

MIB = 2**20


def peak_rss_over_first(result: dict) -> float:
    """The peak RSS of the whole read over the peak while reading the first segment (8K tokens), both VmHWM
    of one process: whether memory grows with the input. (Not over the RSS at 8K, a momentary reading that
    depends on when the allocator last returned a chunk's temporaries: 790-976 MiB for one code and input.)"""
    return result["read_peak_rss_bytes"] / result["records"][0]["peak_rss_bytes"]


def load_runs(folders: list[Path]) -> list[dict]:
    runs = []
    for folder in folders:
        path = folder / "long_read.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: is the run in {folder} finished?")
        runs.append({"name": folder.name, **json.loads(path.read_text())})
    return runs


def markdown(runs: list[dict]) -> str:
    lines = [
        "# Long reads",
        "",
        "| run | depth | tokens | read time | tok/s | last segment / first | peak RSS reading / reading "
        "the first 8K (RSS at 8K) | KV MiB | needle reply | all answers correct | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        records, answers = run["records"], run["answers"]
        needle = answers[0]  # the pass key, or the niah_text needle
        lines.append(
            f"| {run['name']} | {run['settings']['depth']:.0%} | {run['tokens']:,} | "
            f"{run['read_seconds'] / 60:.1f} min | {run['tokens'] / run['read_seconds']:.0f} | "
            f"{run['last_over_first_speed']:.3f} | {run['read_peak_rss_bytes'] / MIB:.0f} / "
            f"{records[0]['peak_rss_bytes'] / MIB:.0f} MiB ({peak_rss_over_first(run):.3f}; "
            f"{records[0]['rss_bytes'] / MIB:.0f} MiB) | "
            f"{max(r['cache_bytes'] for r in records) / MIB:.1f} | {needle['reply']!r} "
            f"(expected {needle['expected']}) | {sum(a['correct'] for a in answers)}/{len(answers)} | "
            f"{run.get('commit') or 'not recorded'} |"
        )
    lines += ["", "Machine and command of each run:", ""]
    lines += [f"- {run['name']}: {run['machine']}; `{run['command']}`" for run in runs]
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        ends = [r["tokens_read"] for r in run["records"]]
        label = f"{run['name']} (key at {run['settings']['depth']:.0%})"
        speed.plot(ends, [r["prefill_tokens_per_second"] for r in run["records"]], "o-", label=label)
        memory.plot(ends, [r["peak_rss_bytes"] / MIB for r in run["records"]], "o-", label=label)
    speed.set(xlabel="tokens read", ylabel="prefill tok/s of the segment", xscale="log", title="speed")
    memory.set(
        xlabel="tokens read", ylabel="peak process RSS so far (VmHWM), MiB", xscale="log", title="memory"
    )
    for axis in (speed, memory):
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=8)
    fig.suptitle("benchmark.long_read: measured points only", fontsize=9)
    fig.tight_layout()
    path = out / "summary.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by benchmark.long_read --out")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    for folder, run in zip(args.runs, runs, strict=True):
        shutil.copyfile(folder / "long_read.json", args.out / f"{run['name']}.json")
    text = markdown(runs)
    (args.out / "summary.md").write_text(text)
    plot(runs, args.out)
    print(text)


if __name__ == "__main__":
    main()
