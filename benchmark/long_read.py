"""A million tokens read once on a CPU: speed along the input, memory, and the pass key found at a depth.

    python -m benchmark.long_read --length 1048576 --depth 0.5 --dtype bfloat16 --threads 2 \
        --out runs/long_read/1m_d50

One ``locret.Session`` (the shipped SmolLM2 heads at their recommended settings; ``--budget`` and
``--chunk-size`` override theirs) reads InfiniteBench's passkey prompt of ``--length`` tokens without its
question, the key at the filler line nearest ``--depth``. (Several keys in one input do not work as a
shortcut: with three labelled keys SmolLM2-135M answers the last one for every label even with the full
cache at 4K.) The input is fed in pieces of ``--piece`` tokens; after every
``--segment`` tokens it records the segment's prefill tok/s, the process RSS (``VmRSS``, and ``VmHWM`` after
a reset once the model is loaded) and the cache's bytes, writes ``progress.json`` and saves the session
(``session.safetensors``), so an interrupted run resumes where it stopped (``--resume``). At the end the
session is saved, loaded back into a fresh ``Session`` and asked three questions, greedy and completion
style: the pass key (InfiniteBench's question), and the colours of the sky and the grass in the filler.

``--needle niah_text`` reads a ``niah_text`` prompt of the test split instead (one needle sentence at
``--depth`` in the test books' prose, which wraps around past ~200K tokens; ``benchmark/natural``) and asks
its one question, scored as that task scores it.

Writes ``long_read.json``, ``long_read.md`` and ``long_read.png`` (measured points only) under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import locret
from locret.acquire import load_tokenizer
from locret.demo import (
    NOISE,
    PASSKEY_COMPLETION_TEMPLATE,
    PASSKEY_NEEDLE,
    PASSKEY_QUESTION,
    is_correct,
    passkey_key,
)
from locret.hardware import cpu_has_native_bf16, resolve_dtype

from .long_read_summary import peak_rss_over_first
from .natural.niah import niah_sample
from .natural.scoring import score_needle
from .profile_memory_speed import _proc_status, reset_peak_rss
from .run import cpu_model, git_commit

PREFIX, QUESTION_TEMPLATE = PASSKEY_COMPLETION_TEMPLATE.split("{context}")


@dataclasses.dataclass(frozen=True)
class Question:
    """A question asked after the input, completion style, and how its reply is scored."""

    text: str  # the tokens that follow the input
    expected: str
    kind: str  # "passkey": the first integer is the key; "word": the reply's first line holds the word;
    # "needle": a niah_text needle's value, as that task scores it

    def correct(self, reply: str) -> bool:
        if self.kind == "passkey":
            return is_correct(reply, self.expected)
        if self.kind == "needle":
            return score_needle(reply, [self.expected]) == 1.0
        return self.expected in reply.strip().splitlines()[0].lower() if reply.strip() else False


def questions(key: str) -> list[Question]:
    """The pass key (InfiniteBench's question), and two questions on the filler itself."""
    return [
        Question(QUESTION_TEMPLATE.format(input=PASSKEY_QUESTION), key, "passkey"),
        Question("\n\nWhat color is the sky in the text above?\n\nThe sky is", "blue", "word"),
        Question("\n\nWhat color is the grass in the text above?\n\nThe grass is", "green", "word"),
    ]


def build_input(tokenizer, length: int, depth: float, seed: int) -> tuple[torch.Tensor, str]:
    """InfiniteBench's passkey prompt without its question: ``length`` token ids (within one filler line),
    the key's line at the line boundary nearest ``depth``; and the key."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must lie in [0, 1], got {depth}")
    key = passkey_key(random.Random(seed))
    needle = PASSKEY_NEEDLE.format(key=key)
    per_line = len(tokenizer.encode(NOISE * 64, add_special_tokens=False)) / 64
    fixed = len(tokenizer.encode(PREFIX + needle))
    n_lines = max(int((length - fixed) / per_line), 1)
    before = round(depth * n_lines)
    text = PREFIX + NOISE * before + needle + NOISE * (n_lines - before)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if abs(ids.numel() - length) > max(per_line, 0.01 * length):
        raise ValueError(f"built {ids.numel()} tokens for a {length}-token input")
    return ids, key


def build_niah_input(
    tokenizer, length: int, depth: float, seed: int, data_dir: str
) -> tuple[torch.Tensor, list[Question]]:
    """A ``niah_text`` test prompt of ``length`` tokens without its question (the needle at ``depth``), and
    the question."""
    sample = niah_sample("single", data_dir, "test", tokenizer, length, depth, seed, 0)
    ids = torch.tensor(tokenizer.encode(sample.prefix + sample.context), dtype=torch.long)
    return ids, [Question(sample.question, sample.answers[0], "needle")]


def next_boundary(done: int, segment: int, piece: int) -> int:
    """Where the next measured segment ends: doubling from one piece up to the first full segment (so the
    first points show the start, e.g. 8K, 16K, 32K), then every ``segment`` tokens."""
    if done < segment:
        return min(max(2 * done, piece), segment)
    return (done // segment + 1) * segment


def machine() -> str:
    """CPU model and core count (from /proc/cpuinfo where there is one), whether it has native bf16, threads
    used, torch version."""
    cpu = cpu_model()
    if cpu_has_native_bf16():
        cpu += " (native bf16)"
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def cache_bytes(session: locret.Session) -> int:
    """Bytes the session's cache holds now (keys, values, scores, positions)."""
    return sum(layer.stored_length() * layer.entry_nbytes() for layer in session.cache.layers)


def plot(records: list[dict], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = [r["tokens_read"] for r in records]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4))
    speed.plot(ends, [r["prefill_tokens_per_second"] for r in records], "o-")
    speed.set(xlabel="tokens read", ylabel="prefill tok/s of the segment", xscale="log", title="speed")
    speed.set_ylim(bottom=0)
    memory.plot(ends, [r["rss_bytes"] / 2**20 for r in records], "o-", label="process RSS")
    memory.plot(ends, [r["peak_rss_bytes"] / 2**20 for r in records], "^-", label="peak RSS so far (VmHWM)")
    memory.plot(
        ends, [r["cache_bytes"] / 2**20 for r in records], "s-", label="KV cache (keys, values, scores)"
    )
    memory.set(xlabel="tokens read", ylabel="MiB", xscale="log", title="memory (measured points)")
    memory.set_ylim(bottom=0)
    memory.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out / "long_read.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    s, first = result["settings"], result["records"][0]
    lines = [
        f"# Long read: {result['tokens']:,} tokens, budget {s['config']['budget']}",
        "",
        f"Machine: {result['machine']}. Model {s['model']} ({s['dtype']}, heads float32), {s['threads']} threads.",
        f"Config: {s['config']}. Command: `{result['command']}` (commit {result.get('commit')})",
        "",
        f"- read (prefill) time: {result['read_seconds']:.0f} s ({result['read_seconds'] / 60:.1f} min), "
        f"{result['tokens'] / result['read_seconds']:.0f} tok/s overall",
        f"- last segment's tok/s / the first {s['segment']:,} tokens': {result['last_over_first_speed']:.3f}",
        f"- peak RSS while reading (VmHWM after loading): {result['read_peak_rss_bytes'] / 2**20:.0f} MiB; "
        f"peak RSS while reading the first {first['tokens_read']:,} tokens: "
        f"{first['peak_rss_bytes'] / 2**20:.0f} MiB (ratio {peak_rss_over_first(result):.3f}); RSS at that "
        f"point: {first['rss_bytes'] / 2**20:.0f} MiB",
        f"- peak RSS of the whole run, answering included: {result['peak_rss_bytes'] / 2**20:.0f} MiB",
        f"- session file: {result['session_file_bytes'] / 2**20:.1f} MiB, saved in {result['save_seconds']:.2f} s, "
        f"loaded in {result['load_seconds']:.2f} s",
        "",
        f"{s.get('needle', 'passkey')} needle at depth {s['depth']:.0%}.",
        "",
        "| question | expected | reply | correct | seconds |",
        "|---|---|---|---|---|",
    ]
    for a in result["answers"]:
        lines.append(
            f"| {a['text'].strip()!r} | {a['expected']} | {a['reply']!r} | {a['correct']} | {a['seconds']:.1f} |"
        )
    lines += ["", "| tokens read | segment tok/s | RSS MiB | KV MiB |", "|---|---|---|---|"]
    for r in result["records"]:
        lines.append(
            f"| {r['tokens_read']:,} | {r['prefill_tokens_per_second']:.0f} | {r['rss_bytes'] / 2**20:.0f} | "
            f"{r['cache_bytes'] / 2**20:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--length", type=int, default=1_048_576)
    p.add_argument("--budget", type=int, default=None, help="default: the heads' recommended budget")
    p.add_argument("--chunk-size", type=int, default=None, help="default: the heads' recommended chunk size")
    p.add_argument("--depth", type=float, default=0.5, help="where the needle lies (0: start, 1: end)")
    p.add_argument(
        "--needle",
        choices=["passkey", "niah_text"],
        default="passkey",
        help="InfiniteBench's pass key in its filler, or a niah_text needle in the test books' prose",
    )
    p.add_argument("--data-dir", default="../shared/data", help="where niah_text's books are")
    p.add_argument("--segment", type=int, default=65536, help="tokens per measured segment and checkpoint")
    p.add_argument("--piece", type=int, default=8192, help="tokens per feed call (progress bar step)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--resume", action="store_true", help="continue from --out's progress.json and session")
    p.add_argument("--out", type=Path, default=Path("runs/long_read"))
    args = p.parse_args(argv)
    if args.segment % args.piece:
        raise ValueError(f"--segment ({args.segment}) must be a multiple of --piece ({args.piece})")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    progress_path, session_path = args.out / "progress.json", args.out / "session.safetensors"

    model = locret.from_pretrained(args.model, dtype=resolve_dtype(args.dtype, torch.device("cpu"))).eval()
    tokenizer = load_tokenizer(args.model)
    config = model.locret_inference_config or locret.LocretConfig()
    if args.budget is not None:
        stabilizers = min(config.n_stabilizers, args.budget // 4)
        config = dataclasses.replace(config, budget=args.budget, n_stabilizers=stabilizers)
    if args.chunk_size is not None:
        config = dataclasses.replace(config, chunk_size=args.chunk_size)
    if args.needle == "passkey":
        ids, key = build_input(tokenizer, args.length, args.depth, args.seed)
        asked = questions(key)
    else:
        ids, asked = build_niah_input(tokenizer, args.length, args.depth, args.seed, args.data_dir)
    settings = {
        "model": args.model,
        "dtype": args.dtype,
        "threads": args.threads,
        "length": args.length,
        "depth": args.depth,
        "seed": args.seed,
        **({"needle": args.needle} if args.needle != "passkey" else {}),  # passkey runs' settings as before
        "segment": args.segment,
        "config": config.to_dict(),
        # what the heads recommend (runs before 0.4.0 had none: the heads' own scores)
        **({"scorer": choice.to_dict()} if (choice := model.locret_scorer_choice) is not None else {}),
    }

    records: list[dict] = []
    if args.resume and progress_path.exists():
        saved = json.loads(progress_path.read_text())
        if saved["settings"] != settings:
            raise ValueError(f"{progress_path} was written with other settings: {saved['settings']}")
        records = saved["records"]
        session = locret.Session.load(session_path, model, tokenizer=tokenizer)
    else:
        session = locret.Session(model, config, tokenizer=tokenizer)
    reset_peak_rss()
    done = session.tokens_read
    bar = tqdm(total=ids.numel(), initial=done, unit="tok", unit_scale=True, desc="long read")
    while done < ids.numel():
        end = min(next_boundary(done, args.segment, args.piece), ids.numel())
        started = time.perf_counter()
        for start in range(done, end, args.piece):
            session.feed(ids[start : min(start + args.piece, end)])
            bar.update(min(start + args.piece, end) - start)
        seconds = time.perf_counter() - started
        records.append(
            {
                "tokens_read": end,
                "segment_tokens": end - done,
                "segment_seconds": seconds,
                "prefill_tokens_per_second": (end - done) / seconds,
                "rss_bytes": _proc_status("VmRSS"),
                "peak_rss_bytes": _proc_status("VmHWM"),
                "cache_bytes": cache_bytes(session),
            }
        )
        done = end
        session.save(session_path)
        progress_path.write_text(json.dumps({"settings": settings, "records": records}, indent=1))
    bar.close()
    read_peak_rss = _proc_status(
        "VmHWM"
    )  # before answering (decoding may prepack weights, see static_decode)

    started = time.perf_counter()
    session.save(session_path)
    save_seconds = time.perf_counter() - started
    started = time.perf_counter()
    loaded = locret.Session.load(session_path, model, tokenizer=tokenizer)
    load_seconds = time.perf_counter() - started
    answers = []
    for question in asked:
        started = time.perf_counter()
        answer = loaded.ask(
            tokenizer.encode(question.text, add_special_tokens=False), max_new_tokens=args.max_new_tokens
        )
        reply = tokenizer.decode(answer.token_ids, skip_special_tokens=True)
        answers.append(
            {
                **dataclasses.asdict(question),
                "reply": reply,
                "correct": question.correct(reply),
                "seconds": time.perf_counter() - started,
            }
        )
        print(f"{question.text.strip()!r}: expected {question.expected}, reply {reply!r}")

    read_seconds = sum(r["segment_seconds"] for r in records)
    first = [r for r in records if r["tokens_read"] <= args.segment]
    first_speed = sum(r["segment_tokens"] for r in first) / sum(r["segment_seconds"] for r in first)
    result = {
        "tokens": ids.numel(),
        "machine": machine(),
        "commit": git_commit(),
        "command": "python -m benchmark.long_read " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": settings,
        "records": records,
        "read_seconds": read_seconds,
        "first_segment_tokens_per_second": first_speed,
        "last_over_first_speed": records[-1]["prefill_tokens_per_second"] / first_speed,
        "read_peak_rss_bytes": read_peak_rss,
        "peak_rss_bytes": _proc_status("VmHWM"),
        "session_file_bytes": session_path.stat().st_size,
        "save_seconds": save_seconds,
        "load_seconds": load_seconds,
        "answers": answers,
    }
    (args.out / "long_read.json").write_text(json.dumps(result, indent=1))
    (args.out / "long_read.md").write_text(markdown(result))
    plot(
        records,
        args.out,
        f"{args.model}, {args.dtype}, budget {config.budget}, {settings['threads']} threads",
    )
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
