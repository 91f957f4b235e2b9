"""Training: the validation loss falls, the backbone is bit-for-bit unchanged, and resume is exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_tiny_labels

from locret.adapter import read_heads
from locret.train import train
from locret.train.loss import (
    listwise_loss,
    retaining_loss,
    share_across_layers,
    standardise_rows,
    top_rank_weights,
)
from locret.train.shards import LabelSet
from locret.train.train import Trainer, TrainSettings, example_for_step

FAST = TrainSettings(
    steps=24, warmup_steps=3, lr=1e-2, retaining_head_size=16, val_examples=3, val_every=12, save_every=8
)


def test_loss_definition() -> None:
    labels = torch.tensor([[[0.0, 2.0, 4.0]]])  # [L=1, Hkv=1, T=3]
    pred = torch.tensor([[0.5], [2.0], [1.0]])  # [T, Hkv]
    smooth_l1 = (0.5 * 0.5**2 + 0 + (3 - 0.5)) / 3
    smoothness = 0.0025 * ((1.5**2 + 1.0**2) / 2)
    assert retaining_loss([pred], labels).item() == pytest.approx(smooth_l1 + smoothness)


def test_top_rank_weighting() -> None:
    labels = torch.tensor([[[0.0, 2.0, 4.0], [5.0, 1.0, 0.0]]])  # [L=1, Hkv=2, T=3]
    weights = top_rank_weights(labels[0], top_fraction=0.3, top_weight=4.0)  # ceil(0.9) = 1 token per head
    assert weights.tolist() == [[1.0, 1.0, 4.0], [4.0, 1.0, 1.0]]
    pred = torch.zeros(3, 2)
    # SmoothL1 against 0: 0, 1.5, 3.5 (head 0); 4.5, 0.5, 0 (head 1); the top entries count 4 times.
    weighted = (0 + 1.5 + 4 * 3.5 + 4 * 4.5 + 0.5 + 0) / 12
    assert retaining_loss([pred], labels, top_fraction=0.3, top_weight=4.0).item() == pytest.approx(weighted)
    assert retaining_loss([pred], labels).item() == pytest.approx((1.5 + 3.5 + 4.5 + 0.5) / 6)
    with pytest.raises(ValueError, match="top_fraction"):
        retaining_loss([pred], labels, top_fraction=1.5)


def test_listwise_term_scores_order_and_ignores_shifts() -> None:
    labels = torch.tensor([[[0.0, 2.0, 4.0]]])  # [L=1, Hkv=1, T=3]
    target = torch.softmax(labels[0, 0], dim=-1)
    pred = torch.tensor([[1.0], [0.0], [3.0]])  # [T, Hkv]
    expected = -(target * torch.log_softmax(pred[:, 0], dim=-1)).sum()
    assert listwise_loss(pred.T, labels[0]).item() == pytest.approx(expected.item())
    assert listwise_loss(pred.T + 7.0, labels[0] - 2.0).item() == pytest.approx(expected.item())
    assert listwise_loss(labels[0], labels[0]) < listwise_loss(labels[0].flip(-1), labels[0])
    plain = retaining_loss([pred], labels).item()
    assert retaining_loss([pred], labels, rank_weight=2.0).item() == pytest.approx(
        plain + 2 * expected.item()
    )


def test_listwise_term_over_heads_compares_the_heads_of_a_layer() -> None:
    labels = torch.tensor([[[0.0, 1.0], [5.0, 6.0]]])  # [L=1, Hkv=2, T=2]: head 1's tokens matter more
    swapped = torch.tensor([[5.0, 0.0], [6.0, 1.0]])  # [T, Hkv]: each head's order right, the heads' wrong
    right = torch.tensor([[0.0, 5.0], [1.0, 6.0]])
    per_head = [retaining_loss([p], labels, rank_weight=1.0) for p in (swapped, right)]
    over_heads = [
        retaining_loss([p], labels, rank_weight=1.0, rank_over_heads=True) for p in (swapped, right)
    ]
    flat = torch.softmax(labels.flatten(), dim=-1)
    expected = -(flat * torch.log_softmax(swapped.T.flatten(), dim=-1)).sum()
    assert over_heads[0] - retaining_loss([swapped], labels) == pytest.approx(expected.item())
    assert over_heads[0] - over_heads[1] > (per_head[0] - per_head[1]) + 1.0  # only it sees the swap
    per_head_rank = [p - retaining_loss([q], labels) for p, q in zip(per_head, (swapped, right), strict=True)]
    assert per_head_rank[0] == pytest.approx(per_head_rank[1].item())  # per head: shifts are invisible


def test_shared_labels_raise_a_token_another_layer_needs_and_keep_each_rows_scale() -> None:
    # Layer 0 ranks token 2 last; layer 1 needs it most (a retrieval layer); scales differ tenfold.
    labels = torch.tensor([[[3.0, 2.0, 1.0, 2.0]], [[0.0, 0.0, 40.0, 0.0]]])  # [L=2, Hkv=1, T=4]
    assert torch.equal(share_across_layers(labels, 0.0), labels)
    shared = share_across_layers(labels, 1.0)
    assert shared.argmax(dim=-1).flatten().tolist() == [2, 2]  # every layer now keeps token 2 first
    assert torch.allclose(shared.mean(-1), labels.mean(-1))  # each row keeps its own mean and spread
    assert torch.allclose(shared.std(-1), shared.std(-1).new_tensor([[labels[0].std()], [labels[1].std()]]))
    half = share_across_layers(labels, 0.5)
    assert labels[0, 0, 2] < half[0, 0, 2] < shared[0, 0, 2]
    with pytest.raises(ValueError, match="shared-label weight"):
        share_across_layers(labels, 1.5)


def test_data_order_is_a_permutation_per_pass() -> None:
    first_pass = [example_for_step(step, 7, seed=3) for step in range(7)]
    assert sorted(first_pass) == list(range(7))
    assert first_pass == [example_for_step(step, 7, seed=3) for step in range(7)]


def test_training_lowers_val_loss_and_freezes_backbone(
    tiny_llama_dir: Path, tiny_labels: Path, tmp_path
) -> None:
    trainer = Trainer(str(tiny_llama_dir), str(tiny_labels), str(tmp_path), FAST)
    heads_before = [p.detach().clone() for p in trainer.head_params]
    metadata = trainer.run()
    assert metadata["final_val_loss"] < 0.8 * metadata["first_val_loss"]
    saved = load_file(tiny_llama_dir / "model.safetensors")
    state = trainer.unwrapped.state_dict()
    backbone = [key for key in saved if "retaining_head" not in key]
    assert backbone and all(torch.equal(state[key], saved[key]) for key in backbone)
    assert any(not torch.equal(a, b) for a, b in zip(heads_before, trainer.head_params, strict=True))
    shape, heads = read_heads(tmp_path)
    assert shape == trainer.unwrapped.head_shape and shape.hidden_size == 16
    config = json.loads((tmp_path / "locret_heads_config.json").read_text())
    training = config["training"]  # training provenance has its own key in the adapter config
    assert training["settings"]["lr"] == FAST.lr and training["final_val_loss"] == metadata["final_val_loss"]
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    log = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 25))


def test_resume_is_exact(tiny_llama_dir: Path, tiny_labels: Path, tmp_path) -> None:
    args = ["--model", str(tiny_llama_dir), "--labels", str(tiny_labels)]
    args += ["--steps", "12", "--warmup-steps", "3", "--lr", "0.01", "--retaining-head-size", "16"]
    args += ["--val-examples", "3", "--val-every", "6", "--save-every", "4"]
    train.main([*args, "--out", str(tmp_path / "straight")])
    train.main([*args, "--out", str(tmp_path / "resumed"), "--stop-at-step", "5"])
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        "step-0000004",
        "step-0000005",
    ]
    train.main([*args, "--out", str(tmp_path / "resumed"), "--resume"])
    _, straight = read_heads(tmp_path / "straight")
    _, resumed = read_heads(tmp_path / "resumed")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    logs = [(tmp_path / run / "losses.jsonl").read_text() for run in ("straight", "resumed")]
    assert logs[0] == logs[1]


def test_validate_scores_an_existing_adapter(
    tiny_llama_dir: Path, tiny_labels: Path, tmp_path, capsys
) -> None:
    args = ["--model", str(tiny_llama_dir), "--labels", str(tiny_labels), "--val-examples", "3"]
    train.main([*args, "--out", str(tmp_path / "heads"), "--steps", "6", "--warmup-steps", "1", "--lr", "0.01",
                "--retaining-head-size", "16", "--val-every", "6"])  # fmt: skip
    final = json.loads((tmp_path / "heads" / "locret_heads_config.json").read_text())["training"][
        "final_val_loss"
    ]
    capsys.readouterr()
    train.main([*args, "--validate", str(tmp_path / "heads")])  # the width comes from the adapter
    assert f"validation loss of {tmp_path / 'heads'}: {final:.4f} (3 examples)" in capsys.readouterr().out
    for both_or_neither in (
        [*args, "--out", str(tmp_path / "x"), "--validate", str(tmp_path / "heads")],
        args,
    ):
        with pytest.raises(SystemExit):
            train.main(both_or_neither)


def test_saved_features_train_exactly_like_the_backbone(tiny_llama_dir: Path, tmp_path) -> None:
    """Heads-only steps on stored features give the same loss and gradients as running the backbone."""
    for name, dtype in (("plain", None), ("features", "float32")):
        write_tiny_labels(tiny_llama_dir, tmp_path / name, 8, features_dtype=dtype)
    settings = TrainSettings(steps=2, warmup_steps=1, retaining_head_size=16, val_examples=2)
    losses, grads = [], []
    for name in ("plain", "features"):
        torch.manual_seed(0)
        trainer = Trainer(str(tiny_llama_dir), str(tmp_path / name), str(tmp_path / f"out_{name}"), settings)
        assert trainer.labels.has_features == (name == "features")
        loss = trainer.example_loss(trainer.train_refs[0])
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in trainer.head_params])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)

    # Whole runs: features read ahead in the background, across validation, give the backbone's losses.
    settings = TrainSettings(steps=5, warmup_steps=1, retaining_head_size=16, val_examples=2, val_every=2)
    logs = []
    for name in ("plain", "features"):
        torch.manual_seed(0)
        out = tmp_path / f"run_{name}"
        Trainer(str(tiny_llama_dir), str(tmp_path / name), str(out), settings).run()
        logs.append([json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()])
    assert [sorted(r) for r in logs[0]] == [sorted(r) for r in logs[1]]
    for plain, features in zip(*logs, strict=True):
        for key in ("loss", "val_loss"):
            if key in plain:
                assert features[key] == pytest.approx(plain[key], rel=1e-4)


def test_feature_reader_returns_the_example_asked_for(tiny_llama_dir: Path, tmp_path) -> None:
    """A read-ahead for one example never answers a request for another."""
    from locret.train.shards import FeatureReader, LabelSet

    refs = LabelSet(write_tiny_labels(tiny_llama_dir, tmp_path, 3, features_dtype="float32")).examples
    reader = FeatureReader()
    reader.request(refs[0])
    assert torch.equal(reader.get(refs[1]), LabelSet.load_features(refs[1]))
    reader.request(refs[2])
    assert torch.equal(reader.get(refs[2]), LabelSet.load_features(refs[2]))
    assert torch.equal(reader.get(refs[0]), LabelSet.load_features(refs[0]))


def test_several_label_directories_train_together(tiny_llama_dir: Path, tiny_labels: Path, tmp_path) -> None:
    """Extra directories only add training examples; validation stays the tail of the first."""
    single = Trainer(str(tiny_llama_dir), str(tiny_labels), str(tmp_path / "one"), FAST)
    double = Trainer(str(tiny_llama_dir), [str(tiny_labels), str(tiny_labels)], str(tmp_path / "two"), FAST)
    assert double.val_refs == single.val_refs
    assert len(double.train_refs) == len(single.train_refs) + len(single.labels)
    metadata = double.run()
    assert metadata["final_val_loss"] < metadata["first_val_loss"]
    config = json.loads((tmp_path / "two" / "locret_heads_config.json").read_text())
    assert config["training"]["labels"] == [str(tiny_labels)] * 2


def test_validation_set_cannot_be_empty(tiny_llama_dir: Path, tiny_labels: Path, tmp_path) -> None:
    settings = TrainSettings(steps=2, warmup_steps=1, retaining_head_size=16, val_examples=0)
    with pytest.raises(ValueError, match="--val-examples must be at least 1"):
        Trainer(str(tiny_llama_dir), str(tiny_labels), str(tmp_path), settings)


def test_standardised_rows_keep_each_rows_order() -> None:
    torch.manual_seed(0)
    labels = torch.randn(3, 2, 50) * torch.tensor([1.0, 7.0])[:, None] - 20.0
    standard = standardise_rows(labels)
    torch.testing.assert_close(standard.mean(dim=-1), torch.zeros(3, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(standard.std(dim=-1), torch.ones(3, 2), atol=1e-5, rtol=0)
    assert torch.equal(standard.argsort(dim=-1), labels.argsort(dim=-1))


def test_label_kinds_mix_only_when_told_and_standardised(
    tiny_llama_dir: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    attention = write_tiny_labels(tiny_llama_dir, tmp_path / "attention", 12, label_kind="attention")
    dirs = [str(attention), str(tiny_labels)]
    with pytest.raises(ValueError, match="different kinds .*--mix-label-kinds"):
        Trainer(str(tiny_llama_dir), dirs, str(tmp_path / "a"), FAST)
    with pytest.raises(ValueError, match="needs --standardise-labels"):
        Trainer(str(tiny_llama_dir), dirs, str(tmp_path / "b"), replace(FAST, mix_label_kinds=True))
    settings = replace(FAST, mix_label_kinds=True, standardise_labels=True)
    trainer = Trainer(str(tiny_llama_dir), dirs, str(tmp_path / "c"), settings)
    ref = trainer.val_refs[0]
    _, labels = LabelSet.load(ref)
    assert labels.le(0).all()  # log-probabilities, the first directory's
    scores = [torch.zeros(ref.n_prompt, 2, requires_grad=True) for _ in range(2)]
    expected = retaining_loss(scores, standardise_rows(labels))
    assert trainer._loss(scores, labels).item() == pytest.approx(expected.item())
    assert expected.item() != pytest.approx(retaining_loss(scores, labels).item())
    metadata = trainer.run()
    assert metadata["final_val_loss"] < metadata["first_val_loss"]
    assert metadata["settings"]["standardise_labels"] and metadata["settings"]["mix_label_kinds"]


def test_boolean_training_flags_parse() -> None:
    _, settings = train._parse_args(["--model", "m", "--labels", "x", "--out", "o", "--standardise-labels"])
    assert settings.standardise_labels and not settings.mix_label_kinds
