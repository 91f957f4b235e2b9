"""Generate training labels for retaining heads: ``python -m locret.train.data_gen``.

``--label-kind logit`` (default) writes CIS labels, ``attention`` KVzip's attention scores (``labels``);
``--format reconstruct`` and ``nq-multidoc`` build their examples from plain text (``natural_data``).

Resumable: completed shards are recorded in the manifest; a restarted run skips the examples they hold
and redoes only the shard that was in progress. Running again with the same output directory and
settings continues where the last run stopped (``--max-examples`` may grow between runs).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from ..adapter import HEADS_WEIGHTS_NAME
from ..config import LocretConfig, default_stabilizers
from .data import (
    FORMATS,
    SAMPLED_FORMATS,
    Example,
    Skip,
    SkipLog,
    TextExample,
    Tokenization,
    examples,
    text_examples,
)
from .eviction_features import features_under_eviction
from .labels import DEFAULT_ANSWER_BLOCK, LABEL_KINDS, compute_cis_labels, compute_labels_and_features
from .natural_data import Sampling, nq_multidoc_examples, reconstruct_examples
from .shards import (
    LABEL_DTYPES,
    MANIFEST_VERSION,
    Record,
    read_manifest,
    shard_name,
    write_manifest,
    write_shard,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes the labels; a resumed run must use the same values."""

    shard_size: int = 32
    answer_block: int = DEFAULT_ANSWER_BLOCK
    label_dtype: str = "float32"
    features_dtype: str | None = None  # also store the prompts' head inputs (heads-only training)
    label_kind: str = "logit"  # labels.LABEL_KINDS


class _Run:
    """State of one label-generation run: the manifest, the shard being filled, the skipped rows."""

    def __init__(self, out_dir: Path, header: dict, settings: GenerationSettings) -> None:
        self.out_dir, self.settings = out_dir, settings
        out_dir.mkdir(parents=True, exist_ok=True)
        previous = read_manifest(out_dir)
        if previous is not None:  # labels written before label kinds existed are CIS logits
            previous["header"].get("generation", {}).setdefault("label_kind", "logit")
        if previous is not None and previous["header"] != header:
            raise ValueError(
                f"{out_dir} holds labels made with different settings:\n  theirs {previous['header']}\n"
                f"  ours   {header}\nuse another --out directory"
            )
        self.manifest = previous or {
            "format_version": MANIFEST_VERSION,
            "header": header,
            "shards": [],
            "skipped": {},
            "skipped_ids": {},
            "complete": False,
            "seconds": 0.0,
        }
        self.skips = SkipLog(self.manifest["skipped_ids"])
        self.buffer: list[Record] = []
        shards = self.manifest["shards"]
        if not self.manifest["complete"] and shards and len(shards[-1]["examples"]) < settings.shard_size:
            self._reopen(shards.pop())  # keep the shard layout of an uninterrupted run
        self.done = {entry["id"] for shard in shards for entry in shard["examples"]}
        self.done.update(record[0] for record in self.buffer)

    def _reopen(self, shard: dict) -> None:
        with safe_open(self.out_dir / shard["file"], framework="pt") as stored:
            for entry in shard["examples"]:
                key = entry["id"]
                features = stored.get_tensor(f"{key}/features") if self.settings.features_dtype else None
                self.buffer.append(
                    (key, stored.get_tensor(f"{key}/labels"), stored.get_tensor(f"{key}/input_ids"), features)
                )

    def add(
        self, example_id: str, labels: torch.Tensor, input_ids: torch.Tensor, features: torch.Tensor | None
    ) -> None:
        labels = labels.to(LABEL_DTYPES[self.settings.label_dtype]).cpu()
        self.buffer.append((example_id, labels, input_ids, None if features is None else features.cpu()))
        self.done.add(example_id)
        if len(self.buffer) >= self.settings.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered examples as the next shard, then the manifest that names it."""
        if not self.buffer:
            self.save_manifest()
            return
        name = shard_name(len(self.manifest["shards"]))
        write_shard(self.out_dir / name, self.buffer)
        entries = [
            {"id": key, "n_prompt": labels.shape[-1], "n_answer": ids.numel() - labels.shape[-1]}
            for key, labels, ids, _ in self.buffer
        ]
        self.manifest["shards"].append({"file": name, "examples": entries})
        self.buffer = []
        self.save_manifest()

    def save_manifest(self) -> None:
        self.manifest["skipped_ids"] = self.skips.reasons
        self.manifest["skipped"] = self.skips.counts()
        write_manifest(self.out_dir, self.manifest)


def generate_labels(
    model,
    stream: Iterable[Example | Skip],
    out_dir: str | Path,
    header: dict,
    settings: GenerationSettings = GenerationSettings(),
    max_examples: int | None = None,
    total: int | None = None,
    on_example: Callable[[str], None] | None = None,
    eviction: LocretConfig | None = None,
) -> dict:
    """Label every example of ``stream`` into ``out_dir``; return the manifest.

    ``header`` describes the model and data (it must match on resume). ``max_examples`` caps the number
    of labelled examples in the directory (this run included); ``on_example`` is called after each one.
    With ``eviction``, the saved head inputs are those of an evicting prefill with these settings and the
    model's heads (``features_under_eviction``); the labels are the full-attention ones either way.
    """
    if eviction is not None and settings.features_dtype is None:
        raise ValueError("eviction-time head inputs are features: set GenerationSettings.features_dtype")
    run = _Run(Path(out_dir), {**header, "generation": asdict(settings)}, settings)
    if run.manifest["complete"]:
        logger.info("%s is already complete (%d examples)", out_dir, len(run.done))
        return run.manifest
    started, exhausted = time.perf_counter(), True
    bar = tqdm(total=total, initial=len(run.done), unit="ex", desc="labels", dynamic_ncols=True)
    try:
        for item in stream:
            if isinstance(item, Skip):
                run.skips.add(item)
                continue
            if item.id in run.done:
                continue
            if max_examples is not None and len(run.done) >= max_examples:
                exhausted = False
                break
            answers = item.answers
            input_ids = torch.tensor(item.prompt_ids + sum(answers, []), dtype=torch.long)
            lengths = [len(answer) for answer in answers]
            features_dtype = LABEL_DTYPES[settings.features_dtype] if settings.features_dtype else None
            n_prompt = len(item.prompt_ids)
            if eviction is None:
                labels, features = compute_labels_and_features(
                    model,
                    input_ids,
                    n_prompt,
                    settings.answer_block,
                    features_dtype,
                    lengths,
                    settings.label_kind,
                )
            else:
                labels = compute_cis_labels(
                    model, input_ids, n_prompt, settings.answer_block, lengths, settings.label_kind
                )
                features = features_under_eviction(model, input_ids[:n_prompt], eviction, features_dtype)
            run.add(item.id, labels, input_ids, features)
            bar.update(1)
            if on_example is not None:
                on_example(item.id)
    finally:
        bar.close()
        run.manifest["seconds"] += time.perf_counter() - started
    run.manifest["complete"] = exhausted
    run.flush()
    logger.info("labelled %d examples, skipped %s", len(run.done), run.manifest["skipped"])
    return run.manifest


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m locret.train.data_gen", description=__doc__)
    parser.add_argument("--model", required=True, help="checkpoint directory, hub id or .gguf file")
    parser.add_argument(
        "--data",
        nargs="+",
        default=["longalpaca"],
        help="'longalpaca' (hub) or a local data file; for --format reconstruct one or more plain-text books, "
        "SQuALITY .jsonl or Natural Questions .jsonl.gz files",
    )
    parser.add_argument("--format", default="auto", choices=FORMATS + SAMPLED_FORMATS)
    parser.add_argument(
        "--label-kind",
        default="logit",
        choices=LABEL_KINDS,
        help="logit: CIS, the max scaled attention logit; attention: the log of the max attention weight (KVzip)",
    )
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        nargs="+",
        default=[1024],
        metavar=("MIN", "MAX"),
        help="reconstruct: passage tokens; nq-multidoc: the passages' total tokens (one value, or a range)",
    )
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of reconstruct/nq-multidoc sampling")
    parser.add_argument("--out", required=True, type=Path, help="output directory (resumed if it exists)")
    parser.add_argument("--raw-template", action="store_true", help="no chat template (base models)")
    parser.add_argument("--max-prompt-tokens", type=int, default=10240)
    parser.add_argument("--max-answer-tokens", type=int, default=1024)
    parser.add_argument("--min-prompt-tokens", type=int, default=16)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--skip-examples", type=int, default=0, help="start after this many source examples")
    parser.add_argument(
        "--distractor-tokens",
        type=int,
        default=0,
        help="insert this many tokens of one repeated passage of --distractor-text into each prompt",
    )
    parser.add_argument("--distractor-text", default=None, help="plain text file the passages come from")
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--answer-block", type=int, default=DEFAULT_ANSWER_BLOCK)
    parser.add_argument("--label-dtype", default="float32", choices=sorted(LABEL_DTYPES))
    parser.add_argument(
        "--save-features",
        choices=sorted(LABEL_DTYPES),
        default=None,
        help="also store each prompt's head inputs in this dtype, so training skips the backbone "
        "(disk: layers x prompt tokens x (H + 2 Hkv) x head_dim per example)",
    )
    parser.add_argument(
        "--eviction-features",
        type=Path,
        default=None,
        metavar="HEADS_DIR",
        help="save the head inputs of an evicting chunked prefill in which these heads choose what is kept "
        "(what the heads see at inference), not those of the full-attention forward; needs --save-features",
    )
    parser.add_argument("--eviction-budget", type=int, default=256)
    parser.add_argument("--eviction-chunk-size", type=int, default=128)
    parser.add_argument("--eviction-stabilizers", type=int, default=None, help="default: budget // 4")
    parser.add_argument("--eviction-pooling", type=int, default=1, help="score pooling window (1: none)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model dtype")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attn-implementation", default="sdpa")
    return parser.parse_args(argv)


def _load(model_name: str, dtype: str, device: str, attn: str, heads: Path | None = None):
    from transformers import AutoTokenizer

    import locret
    from locret.acquire import resolve_model

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # The heads are not used for labels: unless they choose evictions (``heads``), the smallest width keeps
    # them out of the way (a Locret checkpoint's own heads of another width are then ignored, hence
    # ignore_mismatched_sizes).
    model = locret.from_pretrained(
        path,
        heads,
        random_heads=heads is None,
        retaining_head_size=None if heads else 1,
        ignore_mismatched_sizes=True,
        dtype=getattr(torch, dtype),
        attn_implementation=attn,
    )
    return path, tokenizer, model.to(device).eval()


def _source(
    args: argparse.Namespace, tokenizer, sampling: Sampling
) -> tuple[Iterable[TextExample | Skip], int | None]:
    """The examples after ``--skip-examples``, and how many will be labelled (for the progress bar)."""
    if args.format == "reconstruct":  # endless: a later run with a larger --max-examples samples on
        if args.max_examples is None:
            raise SystemExit("--format reconstruct samples passages without end: give --max-examples")
        stream = reconstruct_examples(args.data, tokenizer, sampling)
        return itertools.islice(stream, args.skip_examples, None), args.max_examples
    if args.format == "nq-multidoc":
        items = list(nq_multidoc_examples(args.data[0], tokenizer, sampling))
    else:
        items = text_examples(args.data[0], args.format)
    total = sum(isinstance(item, TextExample) for item in items)
    total = max(total - args.skip_examples, 0)
    total = total if args.max_examples is None else min(total, args.max_examples)
    if args.format != "nq-multidoc":
        items = text_examples(args.data[0], args.format)  # read again: the first pass only counted
    return itertools.islice(items, args.skip_examples, None), total


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.eviction_features is not None and args.save_features is None:
        raise SystemExit("--eviction-features saves head inputs: give --save-features DTYPE as well")
    path, tokenizer, model = _load(
        args.model, args.dtype, args.device, args.attn_implementation, args.eviction_features
    )
    if not args.raw_template and tokenizer.chat_template is None:
        raise SystemExit(f"{args.model} has no chat template: pass --raw-template for a base model")
    if args.distractor_tokens and not args.distractor_text:
        raise SystemExit("--distractor-tokens needs --distractor-text")
    if args.distractor_tokens >= args.max_prompt_tokens:
        raise SystemExit("--distractor-tokens must be smaller than --max-prompt-tokens")
    if len(args.data) > 1 and args.format != "reconstruct":
        raise SystemExit("several --data files are read only by --format reconstruct")
    if len(args.prompt_tokens) > 2:
        raise SystemExit("--prompt-tokens takes MIN or MIN MAX")
    sampling = Sampling(args.prompt_tokens[0], args.prompt_tokens[-1], args.sample_seed)
    tokenization = Tokenization(
        args.max_prompt_tokens,
        args.max_answer_tokens,
        args.min_prompt_tokens,
        args.raw_template,
        args.distractor_tokens,
        args.distractor_text,
    )
    template = (
        "raw" if args.raw_template else hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()[:16]
    )
    header = {
        "model": str(args.model),
        "model_type": model.config.model_type,
        "num_layers": model.config.num_hidden_layers,
        "num_kv_heads": model.head_shape.num_kv_heads,
        "dtype": args.dtype,
        "data": str(args.data[0]) if len(args.data) == 1 else [str(path) for path in args.data],
        "data_format": args.format,
        "skip_examples": args.skip_examples,
        "chat_template": template,
        "tokenization": asdict(tokenization),
    }
    if args.format in SAMPLED_FORMATS:
        header["sampling"] = asdict(sampling)
    eviction = None
    if args.eviction_features is not None:
        stabilizers = args.eviction_stabilizers
        if stabilizers is None:
            stabilizers = default_stabilizers(args.eviction_budget)
        eviction = LocretConfig(
            budget=args.eviction_budget,
            chunk_size=args.eviction_chunk_size,
            n_stabilizers=stabilizers,
            score_pooling=args.eviction_pooling,
        )
        weights = (args.eviction_features / HEADS_WEIGHTS_NAME).read_bytes()
        header["eviction_features"] = {
            "heads": str(args.eviction_features),
            "heads_sha256": hashlib.sha256(weights).hexdigest()[:16],
            **{
                key: getattr(eviction, key)
                for key in ("budget", "chunk_size", "n_stabilizers", "score_pooling")
            },
        }
    settings = GenerationSettings(
        args.shard_size, args.answer_block, args.label_dtype, args.save_features, args.label_kind
    )
    source, total = _source(args, tokenizer, sampling)
    stream = examples(source, tokenizer, tokenization)
    manifest = generate_labels(
        model, stream, args.out, header, settings, args.max_examples, total, eviction=eviction
    )
    count = sum(len(shard["examples"]) for shard in manifest["shards"])
    print(
        f"{count} examples in {len(manifest['shards'])} shards at {args.out} "
        f"({manifest['seconds']:.1f} s, {manifest['seconds'] / max(count, 1):.2f} s/example); "
        f"skipped {manifest['skipped'] or 'none'}; complete: {manifest['complete']}"
    )


if __name__ == "__main__":
    main()
