"""Turn benchmark result folders into a markdown table and PNG plots.

    python -m benchmark.summary runs/ --out benchmark/results/

Reads every case folder under the given roots (or an earlier summary's ``results.json``): its
``metrics.json``, or, for a case a stopped run left unfinished, its finished samples (status ``partial``:
tabled, not plotted). Writes
``results.md`` (one row per case, then a score grid per task/length/depth: methods x budgets),
``results.json`` (the rows), and plots:
``score_vs_budget_<task>_L<length>_d<depth>.png`` (only where two or more budgets ran; one line per
method, full cache and other budget-independent methods as dashed horizontal lines),
``score_vs_length_<task>_b<budget>_d<depth>.png`` (only where a task and depth ran at two or more lengths) and
``depth_by_length_<task>_<method>_b<budget>.png`` (the needle-in-a-haystack picture: one coloured cell per
length and depth, where a method and budget ran at two or more of each).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

from benchmark.run import Case, read_predictions, summarise

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOT_PREFIXES = ("score_vs_budget", "score_vs_length", "depth_by_length")


def case_metrics(folder: Path) -> dict | None:
    """One case folder's metrics: its ``metrics.json`` (written when the case ends), or where a stopped run
    left samples after it (none written yet, or fewer samples than ``predictions.jsonl`` holds), those
    samples summarised as the runner does, against the ``n`` its ``config.json`` asked for."""
    metrics_path, predictions = folder / "metrics.json", folder / "predictions.jsonl"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    config_path = folder / "config.json"
    if predictions.is_file() and config_path.is_file():
        records = read_predictions(predictions)
        if metrics is None or len(records) > metrics["n"]:
            config = json.loads(config_path.read_text())
            metrics = summarise(Case(**config["case"]), records, config["n"])
    return None if metrics is None else {**metrics, "folder": str(folder)}


def collect(roots: list[str | Path], lengths: set[int] | None = None) -> list[dict]:
    """Every case's metrics, with its folder: case folders under result roots (``case_metrics``), or the
    rows of an earlier summary's ``results.json`` (so a table can join committed summaries and new runs).
    A case given twice keeps its last reading; ``lengths`` keeps only those prompt lengths."""
    cases: dict[tuple, dict] = {}
    for root in roots:
        path = Path(root)
        if path.name == "results.json":
            rows = json.loads(path.read_text())
        else:
            folders = sorted({f.parent for name in ("metrics.json", "config.json") for f in path.rglob(name)})
            rows = [row for row in map(case_metrics, folders) if row is not None]
        for row in rows:
            if lengths is None or row["length"] in lengths:
                key = tuple(row[k] for k in ("task", "method", "budget", "length", "depth"))
                if key in cases:
                    print(f"{'/'.join(map(str, key))}: {row['folder']} replaces {cases[key]['folder']}")
                cases[key] = row
    return list(cases.values())


def _sort_key(row: dict) -> tuple:
    return (
        row["task"],
        row["length"] if row["length"] is not None else -1,
        row["depth"] if row["depth"] is not None else -1.0,
        row["method"],
        row["budget"] if row["budget"] is not None else -1,
    )


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _label(value, none: str) -> str:
    return none if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def score_text(row: dict) -> str:
    if row["mean_score"] is None:
        return row.get("status", "n/a") if str(row.get("status", "")).startswith("n/a") else "-"
    return f"{100 * row['mean_score']:.1f}"


def held_text(row: dict) -> str:
    """``held/recorded (score over the held)``, or ``-`` for a case that recorded no needle positions."""
    if not row.get("n_needle_recorded"):
        return "-"
    return f"{row['n_needle_held']}/{row['n_needle_recorded']} ({row['score_sum_when_held']:g})"


def markdown(rows: list[dict]) -> str:
    rows = sorted(rows, key=_sort_key)
    lines = [
        "# Benchmark results",
        "",
        "Scores are mean task scores x 100. Budget `full`: the method keeps every entry (full cache).",
        "",
        "Needle held: the prompts whose needles the cache held whole (every token, layer and KV head) of those "
        "that recorded it, and in brackets the score summed over them.",
        "",
        "| task | length | depth | method | budget | score | n | needle held | prompt tokens | prefill tok/s "
        "| decode tok/s | peak cache MiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cache = r.get("max_peak_cache_bytes")
        lines.append(
            f"| {r['task']} | {_label(r['length'], 'orig')} | {_label(r['depth'], 'sweep')} | {r['method']} "
            f"| {_label(r['budget'], 'full')} | {score_text(r)} | {r['n']} | {held_text(r)} "
            f"| {_cell(r.get('mean_prompt_tokens'), 0)} "
            f"| {_cell(r.get('mean_prefill_tokens_per_second'), 1)} "
            f"| {_cell(r.get('mean_decode_tokens_per_second'), 1)} "
            f"| {_cell(None if cache is None else cache / 2**20, 2)} | {r['status']} |"
        )
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["length"], r["depth"])].append(r)
    for (task, length, depth), group in groups.items():
        title = f"{task}, length {_label(length, 'orig')}, depth {_label(depth, 'sweep')}"
        lines += _grid(title, group, by_length=False)
    across: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        across[(r["task"], r["depth"])].append(r)
    for (task, depth), group in across.items():
        if len({r["length"] for r in group}) > 1:
            lines += _grid(f"{task}, depth {_label(depth, 'sweep')}, every length", group, by_length=True)
    return "\n".join(lines) + "\n"


def _grid(title: str, group: list[dict], by_length: bool) -> list[str]:
    """A methods x budgets score table (rows per length too when ``by_length``), full cache last."""
    budgets = sorted({r["budget"] for r in group if r["budget"] is not None})
    keys = sorted(
        {(r["length"] if by_length else None, r["method"]) for r in group}, key=lambda k: (k[0] or 0, k[1])
    )
    head = "| length | method | " if by_length else "| method | "
    lines = ["", f"## {title}", "", head + " | ".join(f"b={b}" for b in budgets) + " | full |"]
    lines.append("|" + "---|" * (1 + by_length + len(budgets) + 1))
    for length, method in keys:
        by_budget = {
            r["budget"]: r
            for r in group
            if r["method"] == method and (not by_length or r["length"] == length)
        }
        cells = [score_text(by_budget[b]) if b in by_budget else "" for b in [*budgets, None]]
        first = f"| {_label(length, 'orig')} | {method} | " if by_length else f"| {method} | "
        lines.append(first + " | ".join(cells) + " |")
    return lines


def _plot(path: Path, title: str, xlabel: str, series: dict, flat: dict, log_x: bool) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in sorted(series.items()):
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    for method, value in sorted(flat.items()):
        ax.axhline(value, linestyle="--", color="gray" if method == "full" else None, label=f"{method}")
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score (x100)")
    ax.set_ylim(-5, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plots(rows: list[dict], out: Path) -> list[Path]:
    """The PNGs named in the module docstring, from finished cases (a partial case is only tabled)."""
    scored = [r for r in rows if r["mean_score"] is not None and r.get("status") != "partial"]
    written = []
    by_length: dict[tuple, list[dict]] = defaultdict(list)
    by_budget: dict[tuple, list[dict]] = defaultdict(list)
    for r in scored:
        by_length[(r["task"], r["length"], r["depth"])].append(r)
    for (task, length, depth), group in sorted(by_length.items(), key=lambda kv: str(kv[0])):
        if len({r["budget"] for r in group if r["budget"] is not None}) < 2:
            continue  # one budget is a point per method, not a curve
        series: dict[str, list] = defaultdict(list)
        flat = {}
        for r in group:
            if r["budget"] is None:
                flat[r["method"]] = 100 * r["mean_score"]
            else:
                series[r["method"]].append((r["budget"], 100 * r["mean_score"]))
        path = out / f"score_vs_budget_{task}_L{_label(length, 'orig')}_d{_label(depth, 'sweep')}.png"
        _plot(
            path, f"{task}, length {_label(length, 'orig')}", "budget (entries per head)", series, flat, True
        )
        written.append(path)
    for r in scored:
        if r["length"] is not None:
            by_budget[(r["task"], r["depth"])].append(r)
    for (task, depth), group in sorted(by_budget.items(), key=lambda kv: str(kv[0])):
        if len({r["length"] for r in group}) < 2:
            continue  # a single length is a point, not a curve (the markdown grid skips it too)
        budgets = sorted({r["budget"] for r in group if r["budget"] is not None}) or [None]
        for budget in budgets:
            series = defaultdict(list)
            for r in group:
                if r["budget"] == budget or r["budget"] is None:
                    series[r["method"]].append((r["length"], 100 * r["mean_score"]))
            path = out / f"score_vs_length_{task}_b{_label(budget, 'full')}_d{_label(depth, 'sweep')}.png"
            _plot(
                path, f"{task}, budget {_label(budget, 'full')}", "prompt length (tokens)", series, {}, True
            )
            written.append(path)
    return written + depth_by_length_maps(scored, out)


def depth_by_length_maps(scored: list[dict], out: Path) -> list[Path]:
    """One length x depth score map per task, method and budget that ran on such a grid."""
    grids: dict[tuple, list[dict]] = defaultdict(list)
    for r in scored:
        if isinstance(r["length"], int) and isinstance(r["depth"], float):
            grids[(r["task"], r["method"], r["budget"])].append(r)
    written = []
    for (task, method, budget), group in sorted(grids.items(), key=lambda kv: str(kv[0])):
        lengths = sorted({r["length"] for r in group})
        depths = sorted({r["depth"] for r in group})
        if len(lengths) < 2 or len(depths) < 2:
            continue
        cell = {(r["depth"], r["length"]): r for r in group}
        fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2, 0.8 * len(depths) + 1.6))
        scores = [
            [100 * cell[d, n]["mean_score"] if (d, n) in cell else float("nan") for n in lengths]
            for d in depths
        ]
        image = ax.imshow(scores, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        for i, d in enumerate(depths):
            for j, n in enumerate(lengths):
                if (d, n) in cell:
                    row = cell[d, n]
                    text = f"{scores[i][j]:.0f}\nn={row.get('n_scored', row['n'])}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)), [f"{n // 1024}K" if n % 1024 == 0 else str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{100 * d:g}%" for d in depths])
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylabel("needle depth")
        ax.set_title(f"{task}, {method}, budget {_label(budget, 'full')}")
        fig.colorbar(image, ax=ax, label="score (x100)")
        fig.tight_layout()
        path = out / f"depth_by_length_{task}_{method}_b{_label(budget, 'full')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m benchmark.summary", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs",
        nargs="+",
        help="result roots written by benchmark.run --out, or earlier summaries' results.json",
    )
    p.add_argument("--length", help="comma list: keep only these prompt lengths")
    p.add_argument("--out", default="benchmark/results", help="where results.md and the PNGs go")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(a.runs, None if a.length is None else {int(n) for n in a.length.split(",")})
    if not rows:
        where = f" at lengths {a.length}" if a.length else ""
        raise SystemExit(f"no cases{where} in {', '.join(a.runs)} (case folders or results.json rows)")
    (out / "results.md").write_text(markdown(rows))
    (out / "results.json").write_text(json.dumps(sorted(rows, key=_sort_key), indent=1) + "\n")
    written = plots(rows, out)
    stale = [png for prefix in PLOT_PREFIXES for png in out.glob(f"{prefix}_*.png") if png not in written]
    for png in stale:
        png.unlink()  # a plot an earlier summary drew in this folder that no longer describes its rows
    print(f"{len(rows)} cases -> {out / 'results.md'} and {len(written)} plots ({len(stale)} stale removed)")
    return out / "results.md"


if __name__ == "__main__":
    main()
