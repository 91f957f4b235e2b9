"""Memory and speed against input length: full cache vs Locret vs the baselines, in one run.

    python -m benchmark.profile_memory_speed --preset smollm2-135m --lengths 1024,4096,16384 \
        --methods full,locret,streaming_llm --budget 1024 --chunk-size 512 --out benchmark/results/profile

For every (method, length) it measures
- peak KV-cache bytes: ``LocretOutput.peak_cache_bytes`` (keys, values and per-entry scores at the largest
  the cache ever was); for the full cache the stored keys+values, ``layers x 2 x kv_heads x head_dim x
  bytes x (prompt + generated)``;
- peak process memory: ``VmHWM`` from ``/proc/self/status``. ``VmHWM`` only grows, so by default each case
  runs in a fresh subprocess, and the high-water mark is reset after the model is built (``clear_refs``)
  where the kernel allows, so the number is the model plus what generation needed;
- peak GPU memory on CUDA (``torch.cuda.max_memory_allocated``, reset after the model is built);
- prefill and decode tokens per second.
Results are also given as ratios to the full cache at the lengths where the full cache ran (up to
``--full-max-length``, default the model's window). Writes ``profile.json``, ``profile.md`` and PNG plots.

Presets build the published architectures with RANDOM weights (nothing is downloaded; inputs are random
token ids): ``llama-3.1-8b``, ``llama-3.2-3b``, ``phi-3-mini-128k``, ``qwen2.5-7b``, ``qwen3-8b``,
``mistral-7b``, ``gemma-3-4b`` (its text model), ``smollm2-135m`` and ``tiny`` (for tests). Speed and memory
do not depend on the weights' values, only on the shapes. ``--num-layers N`` scales the depth down on a
small machine (reported in the output: per-layer costs are unchanged, totals scale with N). ``--model
PATH`` profiles real weights instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from locret.config import EVICTION_KERNELS
from locret.hardware import resolve_dtype_name

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
RESULT_PREFIX = "PROFILE-RESULT "

# Published shapes (config.json of each release), by family of ``locret.models.LOCRET_CLASSES``. Phi-3's
# LongRoPE factor lists are placeholders of the right length (they change rotation angles only, not cost);
# everything else is as released.
PRESETS: dict[str, dict] = {
    "llama-3.1-8b": dict(
        family="llama",
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        retaining_head_size=1024,
    ),
    "phi-3-mini-128k": dict(
        family="phi3",
        vocab_size=32064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=131072,
        original_max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=32000,
        bos_token_id=1,
        eos_token_id=32000,
        sliding_window=None,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": [1.0] * 48,
            "long_factor": [1.0 + i / 12 for i in range(48)],
            "original_max_position_embeddings": 4096,
        },
        retaining_head_size=1024,
    ),
    "smollm2-135m": dict(
        family="llama",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        retaining_head_size=1024,
    ),
    "llama-3.2-3b": dict(
        family="llama",
        vocab_size=128256,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        retaining_head_size=1024,
    ),
    "qwen2.5-7b": dict(
        family="qwen2",
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        retaining_head_size=1024,
    ),
    "qwen3-8b": dict(
        family="qwen3",
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        retaining_head_size=1024,
    ),
    "mistral-7b": dict(  # v0.3: no sliding window
        family="mistral",
        vocab_size=32768,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        retaining_head_size=1024,
    ),
    "gemma-3-4b": dict(  # the text model of gemma-3-4b-it: 5 sliding (window 1024) : 1 global layers
        family="gemma3_text",
        vocab_size=262208,
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=34,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=1024,
        max_position_embeddings=131072,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        retaining_head_size=1024,
    ),
    "tiny": dict(
        family="llama",
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        retaining_head_size=16,
    ),
}


@dataclass
class Case:
    """One measurement: everything a worker process needs."""

    method: str
    length: int
    preset: str | None
    model: str | None
    heads: str | None
    num_layers: int | None
    dtype: str
    device: str
    budget: int
    chunk_size: int
    n_stabilizers: int
    n_local: int
    decode_tokens: int
    threads: int | None
    eviction_kernel: str = "torch"
    seed: int = 0


@dataclass
class Settings:
    methods: list[str]
    lengths: list[int]
    budget: int = 1024
    chunk_size: int = 512
    n_stabilizers: int | None = None
    n_local: int = 64
    decode_tokens: int = 16
    preset: str | None = "smollm2-135m"
    model: str | None = None
    heads: str | None = None
    num_layers: int | None = None
    dtype: str = "bfloat16"
    device: str = "cpu"
    full_max_length: int | None = None
    threads: int | None = None
    in_process: bool = False
    case_timeout: int = 3600
    out: str = "benchmark/results/profile"
    eviction_kernel: str = "torch"
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- models


def build_preset(name: str, dtype: torch.dtype, device: str, num_layers: int | None = None, seed: int = 0):
    """A Locret model of a preset's shape with random weights, built without a slow default init."""
    from locret.models import LOCRET_CLASSES

    spec = dict(PRESETS[name])
    model_cls = LOCRET_CLASSES[spec.pop("family")]
    if num_layers is not None:
        spec["num_hidden_layers"] = num_layers
    config = model_cls.config_class(**spec)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = model_cls(config)
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if pname.endswith("bias"):
                param.zero_()
            elif param.dim() == 1:  # norm weights
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02 if "retaining_head" not in pname else 0.05, generator=generator)
        # Buffers (RoPE frequencies, Gemma's embedding scale) were left uninitialised by to_empty: the model's
        # own initialisation sets them.
        for module in model.modules():
            if next(module.buffers(recurse=False), None) is not None:
                model._init_weights(module)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.set_attn_implementation("sdpa")
    return model.eval()


def load_model(case: Case):
    if case.preset is not None:
        return build_preset(case.preset, DTYPES[case.dtype], case.device, case.num_layers, case.seed)
    from benchmark.methods import get_method

    return get_method(case.method).prepare(
        case.model, heads_dir=case.heads, dtype=DTYPES[case.dtype], device=case.device
    )


# ----------------------------------------------------------------------------------------------- memory


def _proc_status(field_name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (None where there is no procfs)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False where not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def full_kv_bytes(model, tokens: int) -> int:
    """Keys + values a full cache stores for ``tokens`` tokens."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    element = next(model.parameters()).element_size()
    return cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * element * tokens


def measure(case: Case, model=None) -> dict:
    """Run one case and return its measurements (in this process)."""
    from benchmark.methods import get_method

    if case.threads:
        torch.set_num_threads(case.threads)
    started = time.perf_counter()
    model = model if model is not None else load_model(case)
    build_seconds = time.perf_counter() - started
    rss_model = _proc_status("VmRSS")
    hwm_reset = reset_peak_rss()
    cuda = case.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    method = get_method(case.method)
    budget = case.length if method.budget_independent else case.budget
    config = method.locret_config(budget, case.chunk_size, case.n_stabilizers, case.n_local, case.length)
    config = replace(config, eviction_kernel=case.eviction_kernel)
    generator = torch.Generator().manual_seed(case.seed)
    input_ids = torch.randint(0, model.config.vocab_size, (1, case.length), generator=generator).to(
        case.device
    )
    # eos_token_id=[]: never stop early, so every requested decode step is timed
    out = method.generate(model, input_ids, config, case.decode_tokens, eos_token_id=[])
    generated = int(out.new_tokens.shape[1])
    kv = full_kv_bytes(model, case.length + generated) if method.name == "full" else out.peak_cache_bytes
    return {
        **asdict(case),
        "status": "ok",
        "peak_kv_cache_bytes": kv,
        "measured_cache_bytes": out.peak_cache_bytes,
        "cache_length_after_prefill": out.cache_length_after_prefill,
        "peak_rss_bytes": _proc_status("VmHWM"),
        "rss_after_model_bytes": rss_model,
        "peak_rss_reset_after_model": hwm_reset,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "prefill_seconds": out.prefill_seconds,
        "decode_seconds": out.decode_seconds,
        "prefill_tokens_per_second": out.prefill_tokens_per_second,
        "decode_tokens_per_second": out.decode_tokens_per_second,
        "generated_tokens": generated,
        "model_build_seconds": build_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "num_layers": model.config.num_hidden_layers,
        "window": model.config.max_position_embeddings,
    }


def run_in_subprocess(case: Case, timeout: int) -> dict:
    """Measure ``case`` in a fresh interpreter, so the process high-water mark is this case's alone."""
    command = [sys.executable, "-m", "benchmark.profile_memory_speed", "--worker", json.dumps(asdict(case))]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {**asdict(case), "status": f"timeout after {timeout}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
    tail = proc.stderr.strip().splitlines()[-3:]
    return {**asdict(case), "status": f"failed: {reason}", "error": "\n".join(tail)}


# ---------------------------------------------------------------------------------------------- reports


def add_ratios(results: list[dict]) -> None:
    """``*_vs_full`` for every result whose length the full cache also ran."""
    full = {r["length"]: r for r in results if r["method"] == "full" and r["status"] == "ok"}
    keys = ("peak_kv_cache_bytes", "peak_rss_bytes", "peak_gpu_bytes", "prefill_tokens_per_second",
            "decode_tokens_per_second")  # fmt: skip
    for r in results:
        ref = full.get(r["length"])
        for key in keys:
            ok = ref is not None and r["status"] == "ok" and r.get(key) and ref.get(key)
            r[f"{key}_vs_full"] = r[key] / ref[key] if ok else None


def add_full_projection(results: list[dict]) -> None:
    """For full-cache cases skipped as too long: ``projected_kv_cache_bytes``, the keys and values a full
    cache would store there (bytes per token of a full case that ran, times the tokens), and for the other
    methods at that length ``peak_kv_cache_bytes_vs_projected_full``. A full cache's KV grows exactly
    linearly, so this is arithmetic, not a guess; it is labelled as projected wherever it is shown."""
    ran = [r for r in results if r["method"] == "full" and r["status"] == "ok"]
    if not ran:
        return
    per_token = ran[0]["peak_kv_cache_bytes"] / (ran[0]["length"] + ran[0]["decode_tokens"])
    projected = {}
    for r in results:
        if r["method"] == "full" and r["status"] != "ok":
            r["projected_kv_cache_bytes"] = projected[r["length"]] = per_token * (
                r["length"] + r["decode_tokens"]
            )
    for r in results:
        full = projected.get(r["length"])
        if full is not None and r["method"] != "full" and r.get("peak_kv_cache_bytes"):
            r["peak_kv_cache_bytes_vs_projected_full"] = r["peak_kv_cache_bytes"] / full


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _num(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: list[dict], header: dict) -> str:
    lines = [
        "# Memory and speed profile",
        "",
        f"- model: {header['model']}; dtype {header['dtype']}; device {header['device']}; "
        f"{header['num_layers']} layers{' (scaled down with --num-layers)' if header['scaled_down'] else ''}",
        f"- budget {header['budget']}, chunk {header['chunk_size']}, stabilizers {header['n_stabilizers']}, "
        f"local tail {header['n_local']}, {header['decode_tokens']} decoded tokens; "
        "inputs are random token ids",
        f"- machine: {header['machine']['platform']}, {header['machine']['cpu_count']} CPUs, torch "
        f"{header['machine']['torch']}, {header['machine']['torch_threads']} threads",
        f"- peak RSS: {header['rss_note']}",
        "",
        "| method | length | KV cache MiB | x full | peak RSS MiB | x full | peak GPU MiB | prefill tok/s "
        "| x full | decode tok/s | x full | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["method"], r["length"])):
        kv = _mib(r.get("peak_kv_cache_bytes"))
        kv_ratio = _num(r.get("peak_kv_cache_bytes_vs_full"), 3)
        if r.get("projected_kv_cache_bytes"):
            kv = f"({_mib(r['projected_kv_cache_bytes'])} projected)"
        if r.get("peak_kv_cache_bytes_vs_projected_full"):
            kv_ratio = f"{r['peak_kv_cache_bytes_vs_projected_full']:.4f} (projected)"
        lines.append(
            f"| {r['method']} | {r['length']} | {kv} "
            f"| {kv_ratio} | {_mib(r.get('peak_rss_bytes'))} "
            f"| {_num(r.get('peak_rss_bytes_vs_full'), 2)} | {_mib(r.get('peak_gpu_bytes'))} "
            f"| {_num(r.get('prefill_tokens_per_second'))} "
            f"| {_num(r.get('prefill_tokens_per_second_vs_full'), 2)} "
            f"| {_num(r.get('decode_tokens_per_second'))} "
            f"| {_num(r.get('decode_tokens_per_second_vs_full'), 2)} "
            f"| {r['status']} |"
        )
    return "\n".join(lines) + "\n"


PLOTS = {
    "kv_cache": ("peak_kv_cache_bytes", "peak KV cache (MiB)", 2**20),
    "rss": ("peak_rss_bytes", "peak process memory (MiB)", 2**20),
    "gpu": ("peak_gpu_bytes", "peak GPU memory (MiB)", 2**20),
    "prefill": ("prefill_tokens_per_second", "prefill tokens/s", 1),
    "decode": ("decode_tokens_per_second", "decode tokens/s", 1),
}


def plots(results: list[dict], out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, (key, label, scale) in PLOTS.items():
        ok = [r for r in results if r["status"] == "ok" and r.get(key) is not None]
        if not ok:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in sorted({r["method"] for r in ok}):
            points = sorted((r["length"], r[key] / scale) for r in ok if r["method"] == method)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        projected = name == "kv_cache" and sorted(
            (r["length"], r["projected_kv_cache_bytes"] / scale)
            for r in results
            if r.get("projected_kv_cache_bytes")
        )
        if projected:
            ax.plot(
                *zip(*projected, strict=True),
                linestyle="--",
                marker="x",
                color="gray",
                label="full (projected)",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"profile_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# -------------------------------------------------------------------------------------------------- main


def _csv_int(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> Settings | dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.profile_memory_speed", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument(
        "--render", metavar="DIR", help="only re-render profile.md and plots from DIR/profile.json"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), default=None, help="random-weight architecture")
    source.add_argument("--model", default=None, help="real weights: checkpoint dir or name")
    p.add_argument("--heads", default=None, help="trained heads for --model (method locret)")
    p.add_argument("--lengths", type=_csv_int, default=[1024, 4096, 16384])
    p.add_argument("--methods", default="full,locret,streaming_llm")
    p.add_argument("--budget", type=int, default=1024)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--n-stabilizers", type=int, default=None, help="default: budget // 4")
    p.add_argument("--n-local", type=int, default=64)
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--num-layers", type=int, default=None, help="scale the preset's depth down")
    p.add_argument(
        "--dtype",
        choices=["auto", *sorted(DTYPES)],
        default="auto",
        help="auto: bf16 on CUDA and CPUs with native bf16, float32 elsewhere (bf16 is ~10x slower on AVX2)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--full-max-length", type=int, default=None, help="default: the model's window")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--eviction-kernel", choices=EVICTION_KERNELS, default="torch")
    p.add_argument("--in-process", action="store_true", help="no subprocess per case (peak RSS not isolated)")
    p.add_argument("--case-timeout", type=int, default=3600)
    p.add_argument("--out", default="benchmark/results/profile")
    a = p.parse_args(argv)
    if a.worker:
        return json.loads(a.worker)
    if a.render:
        return Path(a.render)
    from benchmark.methods import get_method

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        try:
            get_method(m)
        except ValueError as err:
            p.error(str(err))
    preset = a.preset if a.preset or a.model else "smollm2-135m"
    return Settings(
        methods=methods,
        lengths=a.lengths,
        budget=a.budget,
        chunk_size=a.chunk_size,
        n_stabilizers=a.n_stabilizers,
        n_local=a.n_local,
        decode_tokens=a.decode_tokens,
        preset=preset,
        model=a.model,
        heads=a.heads,
        num_layers=a.num_layers,
        dtype=resolve_dtype_name(a.dtype, a.device),
        device=a.device,
        full_max_length=a.full_max_length,
        threads=a.threads,
        in_process=a.in_process,
        case_timeout=a.case_timeout,
        out=a.out,
        eviction_kernel=a.eviction_kernel,
    )


def _window(settings: Settings) -> int:
    if settings.preset is not None:
        return PRESETS[settings.preset]["max_position_embeddings"]
    from transformers import AutoConfig

    from locret.acquire import resolve_model

    return AutoConfig.from_pretrained(resolve_model(settings.model)).max_position_embeddings


def profile(settings: Settings) -> list[dict]:
    from tqdm.auto import tqdm

    from benchmark.run import machine

    if settings.threads:
        torch.set_num_threads(settings.threads)
    stabilizers = settings.n_stabilizers if settings.n_stabilizers is not None else settings.budget // 4
    full_max = settings.full_max_length or _window(settings)
    cases = [
        Case(
            m,
            n,
            settings.preset,
            settings.model,
            settings.heads,
            settings.num_layers,
            settings.dtype,
            settings.device,
            settings.budget,
            settings.chunk_size,
            stabilizers,
            settings.n_local,
            settings.decode_tokens,
            settings.threads,
            settings.eviction_kernel,
        )  # fmt: skip
        for m in settings.methods
        for n in sorted(settings.lengths)
    ]
    results, shared_model = [], None
    for case in tqdm(cases, desc="profile", unit="case"):
        if case.method == "full" and case.length + case.decode_tokens > full_max:
            results.append({**asdict(case), "status": f"skipped (> --full-max-length {full_max})"})
            continue
        if settings.in_process:
            if shared_model is None or case.preset is None:
                shared_model = load_model(case)
            result = measure(case, shared_model)
        else:
            result = run_in_subprocess(case, settings.case_timeout)
        results.append(result)
        get = result.get
        tqdm.write(
            f"{case.method} @ {case.length}: {result['status']}, KV {_mib(get('peak_kv_cache_bytes'))} MiB, "
            f"RSS {_mib(get('peak_rss_bytes'))} MiB, prefill {_num(get('prefill_tokens_per_second'))} tok/s, "
            f"decode {_num(get('decode_tokens_per_second'))} tok/s"
        )
    add_ratios(results)
    ok = next((r for r in results if r["status"] == "ok"), {})
    layers = ok.get("num_layers", settings.num_layers)
    scaled = settings.preset is not None and settings.num_layers is not None
    header = {
        **asdict(settings),
        "n_stabilizers": stabilizers,
        "model": settings.model or f"preset {settings.preset} (random weights)",
        "num_layers": layers,
        "scaled_down": scaled,
        "full_max_length": full_max,
        "machine": machine(),
        "rss_note": (
            "whole process, one process per case, high-water mark reset after the model was built"
            if not settings.in_process
            else "NOT isolated (--in-process): the high-water mark carries over between cases"
        ),
    }
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps({"settings": header, "results": results}, indent=1) + "\n")
    render(out)
    return results


def render(out: Path) -> None:
    """Write ``profile.md`` and the plots from ``out/profile.json`` (also re-renders an older run)."""
    saved = json.loads((out / "profile.json").read_text())
    header, results = saved["settings"], saved["results"]
    add_full_projection(results)
    (out / "profile.md").write_text(markdown(results, header))
    title = (
        f"{header['model']}, {header['num_layers']} layers, budget {header['budget']}, {platform.machine()}"
    )
    plots(results, out, title)
    print(f"wrote {out / 'profile.md'}, {out / 'profile.json'} and plots")


def main(argv: list[str] | None = None):
    parsed = parse_args(argv)
    if isinstance(parsed, Path):
        return render(parsed)
    if isinstance(parsed, dict):  # a worker: one case, result on stdout
        result = measure(Case(**parsed))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return result
    return profile(parsed)


if __name__ == "__main__":
    main()
