"""Label generation: shards and manifest, unusable rows counted, interrupt-and-resume identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import synthetic_examples

from locret import from_pretrained
from locret.train import data_gen
from locret.train.data import Example
from locret.train.data_gen import GenerationSettings, generate_labels
from locret.train.labels import compute_cis_labels
from locret.train.shards import LabelSet


def shard_contents(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: load_file(path) for path in sorted(directory.glob("shard-*.safetensors"))}


def test_labels_stored_per_example(tiny_labels: Path, tiny_llama_dir: Path) -> None:
    labels = LabelSet(tiny_labels)
    assert len(labels) == 16 and len(labels.manifest["shards"]) == 4 and labels.manifest["complete"]
    model = from_pretrained(tiny_llama_dir, random_heads=True).eval()
    example = synthetic_examples(16)[5]
    input_ids, stored = labels.load(labels.examples[5])
    assert input_ids.tolist() == example.prompt_ids + example.answer_ids
    expected = compute_cis_labels(model, input_ids, len(example.prompt_ids))
    torch.testing.assert_close(stored, expected, atol=0, rtol=0)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_identically(tiny_labels: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    model = from_pretrained(tiny_llama_dir, random_heads=True).eval()
    header = {"model": str(tiny_llama_dir), "num_layers": 2, "num_kv_heads": 2}
    settings = GenerationSettings(shard_size=4)

    def crash_after_six(example_id: str) -> None:
        if example_id == "ex005":
            raise Interrupt

    with pytest.raises(Interrupt):  # dies mid-shard: shard 1 holds ex004, ex005 only in memory
        generate_labels(model, synthetic_examples(16), tmp_path, header, settings, on_example=crash_after_six)
    assert [len(s["examples"]) for s in json.loads((tmp_path / "manifest.json").read_text())["shards"]] == [4]
    partial = generate_labels(model, synthetic_examples(16), tmp_path, header, settings, max_examples=10)
    assert not partial["complete"] and [len(s["examples"]) for s in partial["shards"]] == [4, 4, 2]
    done = generate_labels(model, synthetic_examples(16), tmp_path, header, settings)
    assert (
        done["complete"]
        and done["shards"] == json.loads((tiny_labels / "manifest.json").read_text())["shards"]
    )
    ours, reference = shard_contents(tmp_path), shard_contents(tiny_labels)
    assert ours.keys() == reference.keys()
    for name, tensors in reference.items():
        assert ours[name].keys() == tensors.keys()
        for key, tensor in tensors.items():
            assert torch.equal(ours[name][key], tensor), (name, key)
    with pytest.raises(ValueError, match="different settings"):
        generate_labels(model, synthetic_examples(16), tmp_path, header, GenerationSettings(shard_size=8))


def test_cli_counts_unusable_rows(tiny_llama_dir: Path, sharegpt_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    argv = ["--model", str(tiny_llama_dir), "--data", str(sharegpt_file), "--out", str(out)]
    argv += ["--min-prompt-tokens", "30", "--max-prompt-tokens", "48", "--shard-size", "3"]
    data_gen.main(argv)
    manifest = json.loads((out / "manifest.json").read_text())
    # rows: 8 usable; "{not json" unreadable; no answer; "hi" too short; a row that is not a conversation
    assert manifest["skipped"] == {
        "no_answer": 1,
        "prompt_too_short": 1,
        "unknown_format": 1,
        "unreadable": 1,
    }
    assert manifest["skipped_ids"]["000002"] == "unreadable"
    assert sum(len(s["examples"]) for s in manifest["shards"]) == 8 and manifest["complete"]
    assert all(e["n_prompt"] <= 48 for s in manifest["shards"] for e in s["examples"])
    assert manifest["header"]["chat_template"] != "raw"
    data_gen.main(argv)  # a complete directory is left as it is
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_several_answers_stored_one_after_another(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """SQuALITY with every reference: the ids hold the answers in order; the labels are over all of them."""
    model = from_pretrained(tiny_llama_dir, random_heads=True).eval()
    prompt, answers = list(range(3, 33)), [[40, 41, 42], [50, 51], [60, 61, 62, 63]]
    example = Example("multi", prompt, answers[0], tuple(answers[1:]))
    generate_labels(model, [example], tmp_path, {"model": "tiny"}, GenerationSettings(shard_size=1))
    input_ids, stored = LabelSet(tmp_path).load(LabelSet(tmp_path).examples[0])
    assert input_ids.tolist() == prompt + sum(answers, [])
    expected = compute_cis_labels(model, input_ids, len(prompt), answer_lengths=[3, 2, 4])
    torch.testing.assert_close(stored, expected, atol=0, rtol=0)
    assert not torch.allclose(stored, compute_cis_labels(model, input_ids, len(prompt)))


def test_cli_reconstruct_with_attention_labels(tiny_llama_dir: Path, tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(f"Line {i} of a plain story. It goes on a little." for i in range(30)))
    out = tmp_path / "labels"
    argv = ["--model", str(tiny_llama_dir), "--data", str(book), "--format", "reconstruct", "--out", str(out)]
    argv += ["--label-kind", "attention", "--prompt-tokens", "60", "90", "--max-answer-tokens", "40"]
    data_gen.main([*argv, "--max-examples", "2"])
    data_gen.main([*argv, "--max-examples", "3"])  # grows: the first two are kept, one more is sampled
    labels = LabelSet(out)
    header = labels.manifest["header"]
    assert header["generation"]["label_kind"] == "attention" and labels.label_kind == "attention"
    assert header["sampling"] == {"min_tokens": 60, "max_tokens": 90, "seed": 0} and len(labels) == 3
    model = from_pretrained(tiny_llama_dir, random_heads=True).eval()
    ref = labels.examples[2]
    input_ids, stored = labels.load(ref)
    assert input_ids.numel() - ref.n_prompt == 40  # the repeat, capped
    expected = compute_cis_labels(model, input_ids, ref.n_prompt, label_kind="attention")
    torch.testing.assert_close(stored, expected, atol=0, rtol=0)
    assert stored.le(0).all()
    logits = [arg if arg != "attention" else "logit" for arg in argv]
    with pytest.raises(ValueError, match="different settings"):
        data_gen.main([*logits, "--max-examples", "3"])


def test_labels_from_before_label_kinds_resume_as_logits(
    tiny_labels: Path, tiny_llama_dir: Path, tmp_path
) -> None:
    manifest = json.loads((tiny_labels / "manifest.json").read_text())
    del manifest["header"]["generation"]["label_kind"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert LabelSet(old).label_kind == "logit"
    model = from_pretrained(tiny_llama_dir, random_heads=True).eval()
    header = {"model": str(tiny_llama_dir), "num_layers": 2, "num_kv_heads": 2}
    done = generate_labels(model, synthetic_examples(16), old, header, GenerationSettings(shard_size=4))
    assert done["complete"]
    with pytest.raises(ValueError, match="different settings"):
        generate_labels(model, [], old, header, GenerationSettings(shard_size=4, label_kind="attention"))
