"""Train retaining heads on CIS labels: ``python -m locret.train.train``.

The backbone is frozen; only the heads train. Each step runs the model over one example's prompt, collects
every layer's head scores and fits them to the labels (``loss.retaining_loss``). The output directory
becomes a heads-only adapter (``locret.load_heads``/``from_pretrained(heads=...)``) plus ``losses.jsonl``
and ``loss_curve.png``; ``checkpoints/`` allows an exact ``--resume``: the data order is a function of
the seed and the step, and heads, optimizer, scheduler and RNG state are restored. ``--validate ADAPTER``
prints an existing adapter's loss on the same validation examples instead (to compare heads trained
otherwise, e.g. an ensemble from ``convert ensemble``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

import locret
from locret.adapter import read_heads_shape
from locret.models.base import collecting_scores

from .loss import retaining_loss, share_across_layers, standardise_rows
from .shards import ExampleRef, FeatureReader, LabelSet

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_NAME = "trainer_state.pt"
LOSS_LOG = "losses.jsonl"
LOSS_PLOT = "loss_curve.png"


@dataclass(frozen=True)
class TrainSettings:
    """Defaults are the paper's (docs/design.md, section 3)."""

    steps: int = 3000
    warmup_steps: int = 2000
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.01
    clip_value: float = 0.5
    max_length: int = 10240
    retaining_head_size: int = 1024
    val_examples: int = 8
    val_every: int = 100
    save_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str = "auto"
    # Not in the paper (0 / 1 = its unweighted loss): weight each head's top-labelled tokens in the loss.
    top_fraction: float = 0.0
    top_weight: float = 1.0
    # Not in the paper (0 = its loss): add a listwise ranking term per layer (loss.listwise_loss).
    rank_weight: float = 0.0
    # With rank_weight: one listwise order over each layer's KV heads together (budget_allocation="adaptive").
    rank_over_heads: bool = False
    # Not in the paper (0 = its labels): blend each layer's labels toward the most-needing layer's.
    shared_label_weight: float = 0.0
    # Not in the paper: regress on each example's labels standardised per (layer, KV head) row (loss.py).
    standardise_labels: bool = False
    # Allow label directories of different kinds (logit and attention); needs standardise_labels.
    mix_label_kinds: bool = False


def example_for_step(step: int, n_train: int, seed: int, rank: int = 0, world: int = 1) -> int:
    """Index of the training example used at ``step``: a fresh seeded permutation per pass over the data."""
    position = step * world + rank
    epoch, offset = divmod(position, n_train)
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return int(order[offset])


class Trainer:
    def __init__(
        self, model_path: str, label_dirs: str | list[str], out_dir: str, settings: TrainSettings
    ) -> None:
        """``label_dirs``: one label directory or several; validation is the tail of the first one, so runs
        that add directories are validated on the same examples."""
        self.settings, self.out_dir, self.model_path = settings, Path(out_dir), model_path
        mixed = settings.mixed_precision
        if mixed == "auto":
            mixed = "bf16" if torch.cuda.is_available() else "no"
        self.accelerator = Accelerator(mixed_precision=mixed)
        self.label_sets = [LabelSet(d) for d in ([label_dirs] if isinstance(label_dirs, str) else label_dirs)]
        self.labels = self.label_sets[0]
        if settings.val_examples < 1:
            raise ValueError("--val-examples must be at least 1: the validation loss is logged and reported")
        if len(self.labels) <= settings.val_examples:
            raise ValueError(
                f"{len(self.labels)} labelled examples: need more than --val-examples {settings.val_examples}"
            )
        self._check_label_kinds()
        if len({label_set.has_features for label_set in self.label_sets}) > 1:
            raise ValueError("mix label directories either all with saved features or all without")
        if self.labels.has_features and self.accelerator.num_processes > 1:
            raise ValueError("labels with saved features train on one process (heads-only steps are cheap)")
        self.train_refs = self.labels.examples[: len(self.labels) - settings.val_examples]
        self.val_refs = self.labels.examples[len(self.train_refs) :]
        for extra in self.label_sets[1:]:
            self.train_refs += extra.examples
        self.feature_reader = FeatureReader() if self.labels.has_features else None

        torch.manual_seed(settings.seed)  # the heads' initialisation
        model = locret.from_pretrained(
            model_path,
            random_heads=True,
            retaining_head_size=settings.retaining_head_size,
            ignore_mismatched_sizes=True,  # fresh heads: a Locret checkpoint's heads may have another width
            dtype=torch.float32,
        )
        self._check_labels_fit(model)
        model.requires_grad_(False)
        self.head_params = [p for head in model.retaining_heads for p in head.parameters()]
        for param in self.head_params:
            param.requires_grad_(True)
        head_ids = {id(p) for p in self.head_params}
        self.backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
        optimizer = torch.optim.AdamW(
            self.head_params,
            lr=settings.lr,
            betas=(settings.beta1, settings.beta2),
            weight_decay=settings.weight_decay,
        )
        scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
        # eval mode throughout: the frozen backbone must compute the same features as at inference.
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
            model.eval(), optimizer, scheduler
        )
        self.step, self.seconds = 0, 0.0

    def _check_label_kinds(self) -> None:
        """Logits and log-probabilities have different scales and offsets: one regression target must not
        mix them unless each example is put on a common scale first."""
        kinds = {str(label_set.directory): label_set.label_kind for label_set in self.label_sets}
        if len(set(kinds.values())) < 2:
            return
        if not self.settings.mix_label_kinds:
            raise ValueError(
                f"label directories of different kinds {kinds}: pass --mix-label-kinds --standardise-labels "
                "to train on them together"
            )
        if not self.settings.standardise_labels:
            raise ValueError(
                f"--mix-label-kinds needs --standardise-labels: logits and log-probabilities {kinds} are on "
                "different scales"
            )

    def _check_labels_fit(self, model) -> None:
        ours = (model.config.num_hidden_layers, model.head_shape.num_kv_heads)
        for label_set in self.label_sets:
            header = label_set.manifest["header"]
            theirs = (header["num_layers"], header["num_kv_heads"])
            if ours != theirs:
                raise ValueError(
                    f"labels in {label_set.directory} are for (layers, kv heads) {theirs}, the model has {ours}"
                )

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------- one step

    def example_loss(self, ref: ExampleRef, next_ref: ExampleRef | None = None) -> torch.Tensor:
        """``ref``'s loss; with saved features, ``next_ref``'s are read in the background meanwhile."""
        input_ids, labels = LabelSet.load(ref)
        length = min(ref.n_prompt, self.settings.max_length)  # causal: truncating keeps earlier Q/K/V exact
        labels = labels[..., :length].to(self.accelerator.device)
        if self.feature_reader is not None:
            # The frozen backbone's head inputs were saved with the labels: heads-only forward.
            features = self.feature_reader.get(ref)
            if next_ref is not None:
                self.feature_reader.request(next_ref)
            features = features[:, :length].to(self.accelerator.device, torch.float32)
            heads = self.unwrapped.retaining_heads
            return self._loss([head(x) for head, x in zip(heads, features, strict=True)], labels)
        input_ids = input_ids[:length][None].to(self.accelerator.device)
        with collecting_scores(self.unwrapped) as sinks:
            self.model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
        return self._loss([layer_scores[0][0] for layer_scores in sinks], labels)

    def _loss(self, scores: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        if settings.standardise_labels:
            labels = standardise_rows(labels)
        labels = share_across_layers(labels, settings.shared_label_weight)
        return retaining_loss(
            scores,
            labels,
            top_fraction=settings.top_fraction,
            top_weight=settings.top_weight,
            rank_weight=settings.rank_weight,
            rank_over_heads=settings.rank_over_heads,
        )

    def _train_ref(self, step: int) -> ExampleRef:
        index = example_for_step(
            step,
            len(self.train_refs),
            self.settings.seed,
            self.accelerator.process_index,
            self.accelerator.num_processes,
        )
        return self.train_refs[index]

    def _validates_after(self, step: int) -> bool:
        return step % self.settings.val_every == 0 or step == self.settings.steps

    def train_step(self) -> float:
        done = self.step + 1  # what is read after this step: the validation set, or the next step's example
        following = self.val_refs[0] if self._validates_after(done) else self._train_ref(done)
        loss = self.example_loss(self._train_ref(self.step), following)
        self.accelerator.backward(loss)
        leaked = [p.shape for p in self.backbone_params if p.grad is not None]
        assert not leaked, f"gradient reached frozen backbone parameters: {leaked[:3]}"
        self.accelerator.clip_grad_value_(self.head_params, self.settings.clip_value)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def validation_loss(self) -> float:
        following = [
            *self.val_refs[1:],
            self._train_ref(self.step) if self.step < self.settings.steps else None,
        ]
        losses = [
            self.example_loss(ref, next_ref).item()
            for ref, next_ref in zip(self.val_refs, following, strict=True)
        ]
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        if not self.accelerator.is_main_process:
            return
        root = self.out_dir / CHECKPOINTS
        final, tmp = root / f"step-{self.step:07d}", root / f"step-{self.step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        locret.save_heads(self.unwrapped, tmp)
        state = {
            "step": self.step,
            "seconds": self.seconds,
            "data_position": self.step * self.accelerator.num_processes,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "settings": asdict(self.settings),
        }
        torch.save(state, tmp / STATE_NAME)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(root.glob("step-???????"))[: -self.settings.keep_checkpoints]:
            shutil.rmtree(old)

    def resume(self) -> bool:
        """Continue from the latest checkpoint in the output directory; False when there is none."""
        found = sorted((self.out_dir / CHECKPOINTS).glob("step-???????"))
        if not found:
            return False
        latest = found[-1]
        state = torch.load(latest / STATE_NAME, weights_only=True)
        if state["settings"] != asdict(self.settings):
            logger.warning(
                "resuming with different settings: %s, was %s", asdict(self.settings), state["settings"]
            )
        locret.load_heads(self.unwrapped, latest)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.seconds = state["step"], state["seconds"]
        self._truncate_log(self.step)
        logger.info("resumed from %s at step %d", latest, self.step)
        return True

    # ---------------------------------------------------------------------------------------- the run

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with (self.out_dir / LOSS_LOG).open("a") as log:
                log.write(json.dumps(record) + "\n")

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from, so no step appears twice."""
        path = self.out_dir / LOSS_LOG
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def run(self, stop_at_step: int | None = None) -> dict | None:
        """Train to ``settings.steps`` (or stop at ``stop_at_step`` with a checkpoint); return the metadata
        saved with the adapter, or None when stopped early."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        end = self.settings.steps if stop_at_step is None else min(stop_at_step, self.settings.steps)
        if self.step == 0:
            (self.out_dir / LOSS_LOG).unlink(missing_ok=True)
            self._log({"step": 0, "val_loss": self.validation_loss()})
        bar = tqdm(
            total=self.settings.steps, initial=self.step, unit="step", desc="train", dynamic_ncols=True
        )
        while self.step < end:
            started = time.perf_counter()
            loss = self.train_step()
            self.seconds += time.perf_counter() - started
            self._log({"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0]})
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            if self._validates_after(self.step):
                self._log({"step": self.step, "val_loss": self.validation_loss()})
            if self.step % self.settings.save_every == 0 and self.step < self.settings.steps:
                self.save_checkpoint()
        bar.close()
        if self.step < self.settings.steps:
            self.save_checkpoint()
            return None
        return self.finish()

    def finish(self) -> dict:
        records = [json.loads(line) for line in (self.out_dir / LOSS_LOG).read_text().splitlines()]
        train = [r["loss"] for r in records if "loss" in r]
        val = [r["val_loss"] for r in records if "val_loss" in r]
        metadata = {
            "labels": [str(label_set.directory) for label_set in self.label_sets],
            "label_header": [label_set.manifest["header"] for label_set in self.label_sets],
            "settings": asdict(self.settings),
            "train_examples": len(self.train_refs),
            "val_examples": len(self.val_refs),
            "final_train_loss": sum(train[-50:]) / len(train[-50:]),
            "first_val_loss": val[0],
            "final_val_loss": val[-1],
            "seconds": self.seconds,
            "seconds_per_step": self.seconds / max(self.settings.steps, 1),
        }
        if self.accelerator.is_main_process:
            locret.save_heads(
                self.unwrapped, self.out_dir, metadata=metadata, base_model=str(self.model_path)
            )
            plot_losses(records, self.out_dir / LOSS_PLOT)
        return metadata


def plot_losses(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train, strict=True), lw=0.6, alpha=0.5, label="train (per step)")
    window = max(1, len(train) // 50)
    if window > 1:
        smooth = [sum(v for _, v in train[i - window : i]) / window for i in range(window, len(train) + 1)]
        ax.plot([s for s, _ in train[window - 1 :]], smooth, label=f"train ({window}-step mean)")
    ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set(xlabel="step", ylabel="loss", yscale="log" if all(v > 0 for _, v in train) else "linear")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainSettings]:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(prog="python -m locret.train.train", description=__doc__)
    parser.add_argument("--model", required=True, help="base model: checkpoint directory, hub id or .gguf")
    parser.add_argument(
        "--labels",
        required=True,
        nargs="+",
        help="directories written by locret.train.data_gen (validation: the tail of the first)",
    )
    parser.add_argument("--out", help="output: heads adapter, logs, checkpoints (not with --validate)")
    parser.add_argument(
        "--validate", metavar="ADAPTER", help="print this adapter's validation loss on --labels and exit"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--stop-at-step", type=int, default=None, help="checkpoint and exit at this step")
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if name == "mixed_precision":
            parser.add_argument(flag, default=value, choices=["auto", "no", "bf16", "fp16"])
        elif isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    if (args.out is None) == (args.validate is None):
        parser.error("give --out to train, or --validate ADAPTER to score an existing adapter")
    return args, TrainSettings(**{name: getattr(args, name) for name in asdict(defaults)})


def main(argv: list[str] | None = None) -> None:
    args, settings = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.validate is not None:
        width = read_heads_shape(args.validate).hidden_size
        trainer = Trainer(args.model, args.labels, "", replace(settings, retaining_head_size=width))
        locret.load_heads(trainer.unwrapped, args.validate)
        loss = trainer.validation_loss()
        print(f"validation loss of {args.validate}: {loss:.4f} ({len(trainer.val_refs)} examples)")
        return
    out = Path(args.out)
    if not args.resume and (out / CHECKPOINTS).exists():
        raise SystemExit(f"{out} already has checkpoints: pass --resume to continue, or use another --out")
    trainer = Trainer(args.model, args.labels, args.out, settings)
    if args.resume and not trainer.resume():
        logger.info("no checkpoint in %s: starting from step 0", out)
    metadata = trainer.run(args.stop_at_step)
    if metadata is None:
        print(f"stopped at step {trainer.step}; continue with --resume")
        return
    print(
        f"heads saved to {out}: {settings.steps} steps in {metadata['seconds']:.1f} s "
        f"({metadata['seconds_per_step']:.3f} s/step), train loss {metadata['final_train_loss']:.4f}, "
        f"val loss {metadata['first_val_loss']:.4f} -> {metadata['final_val_loss']:.4f}"
    )
    if not math.isfinite(metadata["final_train_loss"]):
        raise SystemExit("training diverged: the final loss is not finite")


if __name__ == "__main__":
    main()
