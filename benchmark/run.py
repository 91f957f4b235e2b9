"""Run benchmark cases: tasks x methods x budgets x lengths x depths, resumable, one folder per case.

    python -m benchmark.run --model HuggingFaceTB/SmolLM2-135M-Instruct --heads DIR --task passkey \
        --method full,locret,streaming_llm --budget 256,1024 --length 4096,8192 --depth 0.5 --n 5 --out runs/

Protocol: the prompt is ``prefix + context`` followed by ``question``. The two parts are tokenized
separately and concatenated, and ``n_local`` is set to the question's token count, so the chunked prefill
evicts over ``prefix + context`` before the question is seen; the question is the protected local tail.

Each case folder ``<out>/<task>/<method>/b<budget>_L<length>_d<depth>/`` (``<task>-<split>`` for tasks with
splits: ``--split validation``, the default, or ``test``) holds
- ``predictions.jsonl``: one line per sample (written as soon as it finishes: a rerun skips it; processes
  started with ``--shard 0/2`` and ``--shard 1/2`` share a case's samples and append to the same file);
- ``metrics.json``: mean score, counts and timings;
- ``config.json``: the exact configuration (model, dtype, method parameters, git commit, machine).

Questions in a row on the same context (L-Eval's many questions per document) prefill it once and each
continue from a copy of its cache: exact, since the context is evicted before any question is seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.methods import METHODS, Method, get_method, parse_method
from benchmark.methods.base import NONE, TRAINED
from benchmark.natural.splits import SPLITS
from benchmark.oracle import token_spans
from benchmark.sample import Sample, SampleSpecific
from benchmark.tasks import TASKS, load_task, score
from locret.adapter import heads_digest, read_heads
from locret.config import default_stabilizers
from locret.hardware import resolve_dtype_name
from locret.loading import default_heads_for
from locret.train.shards import atomic_write_text

logger = logging.getLogger("benchmark.run")

NA_WINDOW = "n/a (exceeds window)"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Settings that change results: a rerun into an existing case folder must agree on them.
_RESULT_KEYS = (
    "model",
    "heads",
    "dtype",
    "heads_dtype",
    "chunk_size",
    "n_stabilizers",
    "chat_template",
    "style",
    "seed",
    "max_new_tokens",
    "n",
)


@dataclass
class Settings:
    """Everything one invocation sweeps over, as parsed from the command line."""

    model: str
    out: str
    tasks: list[str]
    methods: list[str]
    budgets: list[int]
    lengths: list[int | None] = field(default_factory=lambda: [None])
    depths: list[float | None] = field(default_factory=lambda: [None])
    heads: str | None = None
    n: int | None = 5
    chunk_size: int = 512
    n_stabilizers: int | None = None  # None: budget // 4
    dtype: str = "bfloat16"
    heads_dtype: str = "float32"  # the resolved name ("model" on the command line: the model's dtype)
    data_dir: str | None = None
    chat_template: bool = False
    max_new_tokens: int | None = None  # None: the task's own
    seed: int = 0
    device: str = "cpu"
    attn_implementation: str = "sdpa"
    longheads_window: int = 256
    threads: int | None = None  # torch CPU threads (None: torch's default)
    split: str = "validation"  # for tasks with splits (natural tasks); the test split only when asked
    shard: tuple[int, int] | None = None  # (k, n): run only the samples whose index is k modulo n

    @property
    def style(self) -> str:
        return "chat" if self.chat_template else "completion"

    def stabilizers(self, budget: int) -> int:
        n = default_stabilizers(budget) if self.n_stabilizers is None else self.n_stabilizers
        return min(n, budget - 1)


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 0 <= K < N")
    return k, n


def _csv(kind):
    def parse(text: str) -> list:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]

    return parse


def _length(text: str) -> int | None:
    return None if text.lower() in ("none", "full", "") else int(text)


def _depth(text: str) -> float | None:
    return None if text.lower() in ("none", "sweep", "") else float(text)


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmark.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint dir, .gguf, or hub id / known name")
    p.add_argument("--heads", default=None, help="trained retaining-heads adapter directory")
    p.add_argument("--task", required=True, type=_csv(str), help=f"comma list of: {', '.join(TASKS)}")
    p.add_argument(
        "--method",
        required=True,
        type=_csv(str),
        help=f"comma list of: {', '.join(METHODS)}; settings after the name, e.g. snapkv:window=64:kernel_size=5",
    )
    p.add_argument("--budget", required=True, type=_csv(int), help="comma list of cache budgets")
    p.add_argument("--length", type=_csv(_length), default=[None], help="comma list of prompt lengths")
    p.add_argument("--depth", type=_csv(_depth), default=[None], help="needle depth(s) 0..1; default: sweep")
    p.add_argument("--n", type=int, default=5, help="samples per case")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="validation",
        help="split of the tasks that have one (niah_text*, multidoc_qa); report test only once per version",
    )
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--n-stabilizers", type=int, default=None, help="default: budget // 4")
    p.add_argument(
        "--dtype",
        choices=["auto", *sorted(DTYPES)],
        default="auto",
        help="auto: bf16 on CUDA and CPUs with native bf16, float32 elsewhere (bf16 is ~10x slower on AVX2)",
    )
    p.add_argument(
        "--heads-dtype",
        choices=["model", *sorted(DTYPES)],
        default="float32",
        help="retaining heads' dtype (model: round them to the model's dtype)",
    )
    p.add_argument("--data-dir", default=None, help="released data root (e.g. ../shared/data)")
    p.add_argument("--chat-template", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--attn-implementation", default="sdpa")
    p.add_argument("--longheads-window", type=int, default=256, help="LongHeads chunk length")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        help="K/N: run only every N-th sample of each case, from the K-th (split a case across processes)",
    )
    p.add_argument("--out", required=True, help="results root")
    a = p.parse_args(argv)
    for name in a.method:
        try:
            get_method(name)
        except ValueError as err:
            p.error(str(err))
    for name in a.task:
        if name not in TASKS:
            p.error(f"unknown task {name!r}")
    return Settings(
        model=a.model,
        out=a.out,
        tasks=a.task,
        methods=a.method,
        budgets=a.budget,
        lengths=a.length,
        depths=a.depth,
        heads=a.heads,
        n=a.n,
        chunk_size=a.chunk_size,
        n_stabilizers=a.n_stabilizers,
        dtype=resolve_dtype_name(a.dtype, a.device),
        heads_dtype=resolve_dtype_name(a.dtype, a.device) if a.heads_dtype == "model" else a.heads_dtype,
        data_dir=a.data_dir,
        chat_template=a.chat_template,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
        device=a.device,
        attn_implementation=a.attn_implementation,
        longheads_window=a.longheads_window,
        threads=a.threads,
        split=a.split,
        shard=a.shard,
    )


# ----------------------------------------------------------------------------------------------- context


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name and logical CPU count (from /proc/cpuinfo where there is one), else the
    architecture: machines of one kind differ in CPU, and with it in speed and in bf16 GEMM rounding."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x{len(names)}" if names else platform.machine()


def machine() -> dict:
    import transformers

    info = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


# ---------------------------------------------------------------------------------------------- prompting


@dataclass
class Prompt:
    """Token ids of one sample: ``ids = context_ids + question_ids``; ``n_question`` is the local tail."""

    ids: list[int]
    n_question: int

    @cached_property
    def context_ids(self) -> tuple[int, ...]:
        """What is prefilled (and evicted over) before the question: all but ``max(n_question, 1)`` tokens."""
        return tuple(self.ids[: len(self.ids) - max(self.n_question, 1)])


CHAR_SPANS = "_char_spans"  # a task's character spans in ``sample.meta``: the needles', the documents'


def encode_sample(tokenizer, sample: Sample, chat_template: bool) -> Prompt:
    """Tokenize ``prefix + context`` and ``question`` separately (the split is exact) and join them; every
    ``meta["<what>_char_spans"]`` of the prompt's text is mapped to ``meta["<what>_token_spans"]``."""
    if chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": sample.prompt}], tokenize=False, add_generation_prompt=True
        )
        cut = text.rindex(sample.question) if sample.question else len(text)
        head, tail = text[:cut], text[cut:]
        head_ids = tokenizer.encode(head, add_special_tokens=False)
        shift = text.find(sample.prefix + sample.context)
    else:
        head, tail = sample.prefix + sample.context, sample.question
        head_ids = tokenizer.encode(head)  # BOS, if the tokenizer adds one
        shift = 0
    for key in [key for key in sample.meta if key.endswith(CHAR_SPANS) and sample.meta[key]]:
        if shift < 0:
            raise ValueError(f"the chat template changed the text of {sample.id}: cannot locate its {key}")
        spans = [(start + shift, end + shift) for start, end in sample.meta[key]]
        sample.meta[key.removesuffix(CHAR_SPANS) + "_token_spans"] = token_spans(
            tokenizer, head, head_ids, spans, not chat_template
        )
    tail_ids = tokenizer.encode(tail, add_special_tokens=False) if tail else []
    return Prompt(ids=head_ids + tail_ids, n_question=len(tail_ids))


def eos_ids(tokenizer, model) -> list[int]:
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return sorted(ids)


# -------------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    task: str
    method: str
    budget: int | None  # None: the method does not depend on it (full cache)
    length: int | None
    depth: float | None
    split: str | None = None  # for tasks with splits

    @property
    def label(self) -> str:
        """The task with its split (``niah_text-test``): folders and summaries keep splits apart."""
        return self.task if self.split is None else f"{self.task}-{self.split}"

    @property
    def key(self) -> str:
        budget = "full" if self.budget is None else self.budget
        length = "orig" if self.length is None else self.length
        depth = "sweep" if self.depth is None else f"{self.depth:g}"
        return f"{self.label}/{self.method}/b{budget}_L{length}_d{depth}"


def plan_cases(settings: Settings) -> list[Case]:
    cases = []
    for task in settings.tasks:
        split = settings.split if TASKS[task].splits else None
        for length in settings.lengths:
            for depth in settings.depths:
                for name in settings.methods:
                    budgets = [None] if get_method(name).budget_independent else settings.budgets
                    cases.extend(Case(task, name, b, length, depth, split) for b in budgets)
    return cases


def read_predictions(path: Path, repair: bool = False) -> list[dict]:
    """Finished samples. A torn line (interrupted write) is dropped, and with ``repair`` the file is
    rewritten without it (atomically), so the sample is redone and appended cleanly."""
    if not path.is_file():
        return []
    records, torn = [], False
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn = True
            logger.warning("dropping a malformed line in %s (that sample is run again)", path)
    if torn and repair:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def _extends(records: list[dict], samples: list[Sample]) -> bool:
    """Whether a larger ``--n`` only adds samples to those stored: every stored prediction is one of the new
    samples, same id and answers (seeded synthetic tasks at a fixed depth and file tasks draw in a fixed
    order; a depth sweep spreads its depths by n, so its ids change and it cannot be extended)."""
    answers = {sample.id: list(sample.answers) for sample in samples}
    return all(answers.get(r["id"]) == list(r["answers"]) for r in records)


def _changed_settings(previous: dict, config: dict) -> list[str]:
    """The result-changing settings in which a case folder's stored configuration differs from this run's.
    Folders written by older versions lack two keys: ``heads_dtype`` (the heads then took the model's
    dtype) and ``heads_digest`` (not checked for them)."""
    previous = {"heads_dtype": previous.get("dtype"), **previous}
    changed = [k for k in _RESULT_KEYS if previous.get(k) != config.get(k)]
    if "heads_digest" in previous and previous["heads_digest"] != config.get("heads_digest"):
        changed.append("heads_digest")
    return changed


def needle_held(cache, spans: list[list[int]] | None) -> list[float] | None:
    """Per needle (``needle_token_spans``), the share of its tokens the cache holds, averaged over every layer
    and KV head: 1.0 where all of it was kept everywhere. None without needles or positions (a method whose
    cache does not record them)."""
    if not spans or cache is None or not getattr(cache.layers[0], "track_positions", False):
        return None
    shares = []
    for start, end in spans:
        wanted = torch.arange(start, end, device=cache.layers[0].positions.device)
        held = [
            (layer.positions[0, :, :, None] == wanted).any(dim=-2).float().mean() for layer in cache.layers
        ]
        shares.append(round(float(torch.stack(held).mean()), 6))
    return shares


def summarise(case: Case, records: list[dict], expected: int) -> dict:
    scored = [r for r in records if r.get("score") is not None]
    recorded = [r for r in scored if r.get("needle_held") is not None]
    held = [r for r in recorded if min(r["needle_held"]) == 1.0]

    def mean(key: str) -> float | None:
        values = [r[key] for r in scored if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    status = "complete" if len(records) >= expected else "partial"
    if records and not scored:
        status = records[0].get("status", "n/a")
    return {
        **asdict(case),
        "task": case.label,
        "status": status,
        "n": len(records),
        "n_expected": expected,
        "n_scored": len(scored),
        "mean_score": mean("score"),
        "mean_prompt_tokens": mean("prompt_tokens"),
        "mean_prefill_tokens_per_second": mean("prefill_tokens_per_second"),
        "mean_decode_tokens_per_second": mean("decode_tokens_per_second"),
        "mean_prefill_seconds": mean("prefill_seconds"),
        "mean_decode_seconds": mean("decode_seconds"),
        "max_peak_cache_bytes": max((r["peak_cache_bytes"] for r in scored), default=None),
        # the prompts whose every needle the cache held whole, of those with needles and recorded positions,
        # and the score over those: a scorer that dropped the needle, or a model that misread a cache holding it
        "n_needle_recorded": len(recorded) if recorded else None,
        "n_needle_held": len(held) if recorded else None,
        "score_sum_when_held": sum(r["score"] for r in held) if recorded else None,
    }


class ModelPool:
    """Loads each model a method needs once; methods that ignore the heads reuse any loaded copy."""

    def __init__(self, settings: Settings, model_dir: Path) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.models: dict[str, object] = {}
        self.loads = 0

    def get(self, method: Method):
        if method.heads in self.models:
            return self.models[method.heads]
        if method.heads == NONE and self.models:
            return next(iter(self.models.values()))
        s = self.settings
        model = method.prepare(
            self.model_dir,
            heads_dir=s.heads,
            dtype=DTYPES[s.dtype],
            device=s.device,
            attn_implementation=s.attn_implementation,
            heads_dtype=DTYPES[s.heads_dtype],
        )
        self.loads += 1
        self.models[method.heads] = model
        return model

    @cached_property
    def trained_heads_digest(self) -> str | None:
        """What trained-heads methods load, as ``from_pretrained`` resolves it (``--heads``, else the heads
        shipped for the model), digested from the file; None for heads inside a full checkpoint."""
        adapter = default_heads_for(self.model_dir, self.settings.heads)
        return None if adapter is None else heads_digest(read_heads(adapter)[1])


def run_case(
    case: Case,
    method: Method,
    samples: list[Sample],
    prompts: list[Prompt],
    pool: ModelPool,
    tokenizer,
    settings: Settings,
    base_config: dict,
) -> dict:
    """Run the unfinished samples of one case, appending each result as it completes."""
    folder = Path(settings.out) / case.key
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        **base_config,
        "case": asdict(case),
        "method": method.params(),
        "method_description": method.description,
        "budget": case.budget,
        "n_stabilizers": None if case.budget is None else settings.stabilizers(case.budget),
    }
    if method.heads == TRAINED:
        config["heads_digest"] = pool.trained_heads_digest
    predictions = folder / "predictions.jsonl"
    # A torn line may be another shard's write in progress: only an unsharded run rewrites the file.
    records = read_predictions(predictions, repair=settings.shard is None)
    config_path = folder / "config.json"
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        changed = _changed_settings(previous, config)
        if changed == ["n"] and previous["n"] < config["n"] and _extends(records, samples):
            logger.info("%s: adding samples (n %d -> %d)", folder, previous["n"], config["n"])
        elif changed:
            raise ValueError(
                f"{folder} holds results of another configuration (differs in {', '.join(changed)}); "
                "use another --out"
            )
    atomic_write_text(config_path, json.dumps(config, indent=1, default=str) + "\n")  # shards read it
    done = {r["id"] for r in records}
    k, n = settings.shard or (0, 1)
    todo = [
        (s, p)
        for i, (s, p) in enumerate(zip(samples, prompts, strict=True))
        if i % n == k and s.id not in done
    ]
    if todo:
        model = pool.get(method)
        eos = eos_ids(tokenizer, model)
        device = next(model.parameters()).device
        contexts = SharedContexts([p.context_ids for _, p in todo])
        with predictions.open("a") as out:
            for sample, prompt in tqdm(todo, desc=case.key, unit="sample", leave=False):
                record = run_sample(
                    case, method, model, sample, prompt, tokenizer, settings, eos, device, contexts
                )
                out.write(json.dumps(record) + "\n")
                out.flush()
    records = read_predictions(predictions)  # with every shard's samples finished so far
    metrics = summarise(case, records, len(samples))
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics


class SharedContexts:
    """Prefills a context once when several questions in a row share it (L-Eval: many per document).

    Exact, not an approximation: eviction during the context's prefill never sees the question, so each
    question continuing from a copy of the context's cache gets the cache it would have built alone.
    """

    def __init__(self, contexts: list[tuple[int, ...]]) -> None:
        self.repeated = {c for c, n in Counter(contexts).items() if n > 1}
        self.key: tuple[int, ...] | None = None
        self.cache = None
        self.seconds = 0.0

    def get(self, method: Method, model, input_ids: torch.Tensor, config, context: tuple[int, ...]):
        """``(cache or None, seconds the context's prefill took, whether it was reused)``."""
        if context not in self.repeated:
            return None, 0.0, False
        if context == self.key:
            return self.cache, self.seconds, self.cache is not None
        started = time.perf_counter()
        self.cache = method.prefill_context(model, input_ids, config, track_positions=True)
        if input_ids.is_cuda:
            torch.cuda.synchronize()
        self.key, self.seconds = context, time.perf_counter() - started
        return self.cache, self.seconds, False


def run_sample(case, method, model, sample, prompt, tokenizer, settings, eos, device, contexts) -> dict:
    max_new = settings.max_new_tokens or sample.max_new_tokens
    base = {
        "id": sample.id,
        "answers": sample.answers,
        "prompt_tokens": len(prompt.ids),
        "question_tokens": prompt.n_question,
        "depth": sample.meta.get("depth"),
        "needle_depth": sample.meta.get("needle_depth"),
        "needle_token_spans": sample.meta.get("needle_token_spans"),
    }
    if not method.fits(len(prompt.ids), max_new, model):
        return {**base, "prediction": None, "score": None, "status": NA_WINDOW}
    if isinstance(method, SampleSpecific):
        method = method.for_sample(sample)
    budget = case.budget if case.budget is not None else len(prompt.ids)
    config = method.locret_config(
        budget, settings.chunk_size, settings.stabilizers(budget), prompt.n_question, len(prompt.ids)
    )
    input_ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
    context_cache, context_seconds, reused = contexts.get(
        method, model, input_ids, config, prompt.context_ids
    )
    out = method.generate(
        model, input_ids, config, max_new, eos_token_id=eos, context_cache=context_cache, track_positions=True
    )
    held = needle_held(out.past_key_values, sample.meta.get("needle_token_spans"))
    out.past_key_values = None  # not kept past this prompt
    prediction = tokenizer.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)
    prefill_seconds = context_seconds + out.prefill_seconds  # what this prompt costs alone
    return {
        **base,
        "prediction": prediction,
        "score": score(case.task, prediction, sample),
        "status": "ok",
        "needle_held": held,
        "context_prefill_reused": reused,
        "new_tokens": int(out.new_tokens.shape[1]),
        "prefill_seconds": prefill_seconds,
        "decode_seconds": out.decode_seconds,
        "prefill_tokens_per_second": len(prompt.ids) / prefill_seconds,
        "decode_tokens_per_second": out.decode_tokens_per_second,
        "cache_length_after_prefill": out.cache_length_after_prefill,
        "cache_length_final": out.cache_length_final,
        "peak_cache_bytes": out.peak_cache_bytes,
    }


def load_samples(settings: Settings, tokenizer, task: str, length, depth, split=None) -> list[Sample]:
    kwargs = dict(data_dir=settings.data_dir, tokenizer=tokenizer, n=settings.n, seed=settings.seed)
    if split is not None:
        kwargs["split"] = split
    if length is not None:
        kwargs["length"] = length
    if depth is not None:
        kwargs["depth"] = depth
    return load_task(task, style=settings.style, **kwargs)


def run(settings: Settings, tokenizer=None, model_dir: Path | None = None) -> list[dict]:
    """Run every planned case (skipping finished samples); return their metrics."""
    from locret.acquire import load_tokenizer, resolve_model

    if settings.threads:
        torch.set_num_threads(settings.threads)
    model_dir = Path(model_dir) if model_dir is not None else resolve_model(settings.model)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
    methods = {name: _make_method(name, settings) for name in settings.methods}
    pool = ModelPool(settings, model_dir)
    base_config = {
        **{k: getattr(settings, k) for k in _RESULT_KEYS if hasattr(settings, k)},
        "style": settings.style,
        "model_dir": str(model_dir),
        "device": settings.device,
        "attn_implementation": settings.attn_implementation,
        "git_commit": git_commit(),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    cases = plan_cases(settings)
    loaded: dict[tuple, tuple[list[Sample], list[Prompt]]] = {}
    results = []
    for case in tqdm(cases, desc="cases", unit="case"):
        key = (case.task, case.length, case.depth, case.split)
        if key not in loaded:
            samples = load_samples(settings, tokenizer, *key)
            loaded[key] = (samples, [encode_sample(tokenizer, s, settings.chat_template) for s in samples])
        samples, prompts = loaded[key]
        method = methods[case.method]
        if not method.reads_context:
            prompts = [encode_sample(tokenizer, s.closed_book(), settings.chat_template) for s in samples]
        metrics = run_case(case, method, samples, prompts, pool, tokenizer, settings, base_config)
        results.append(metrics)
        tqdm.write(f"{case.key}: score={_fmt(metrics['mean_score'])} n={metrics['n']} ({metrics['status']})")
    return results


def _make_method(name: str, settings: Settings) -> Method:
    if parse_method(name)[0] == "longheads":
        return get_method(name, window_size=settings.longheads_window)
    return get_method(name)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
