"""On-disk format of generated labels: safetensors shards plus ``manifest.json``.

Each shard holds, per example ``ID``, ``ID/labels`` ``[L, Hkv, n_prompt]``, ``ID/input_ids`` (prompt
then the answer, or the answers one after another, int32) and, with ``--save-features``, ``ID/features``
``[L, n_prompt, F]`` (the heads' input). The manifest lists the shards in order with their example ids, the
generation settings and the skipped rows. Shards and the manifest are written atomically (temporary file, then
rename), so an interrupted run leaves either the old or the new file, never half of one, and the manifest
only ever names shards that are complete on disk.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
LABEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def atomic_write_text(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a part; the temporary name is the process's own, so
    processes writing the same file (benchmark shards) do not clobber each other's half-written copy."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


Record = tuple[str, torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def write_shard(path: Path, records: list[Record]) -> None:
    """Write ``(id, labels, input_ids, features or None)`` records to one shard, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for example_id, labels, input_ids, features in records:
        tensors[f"{example_id}/labels"] = labels.contiguous().cpu()
        tensors[f"{example_id}/input_ids"] = input_ids.to(torch.int32).contiguous().cpu()
        if features is not None:
            tensors[f"{example_id}/features"] = features.contiguous().cpu()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"format": "locret-cis-labels"})
    os.replace(tmp, path)


def read_manifest(directory: Path) -> dict | None:
    path = Path(directory) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(directory: Path, manifest: dict) -> None:
    atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")


@dataclass(frozen=True)
class ExampleRef:
    """Where one labelled example lives."""

    id: str
    shard: Path
    n_prompt: int


class LabelSet:
    """Read access to a label directory: the examples in manifest order, loaded one at a time."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        manifest = read_manifest(self.directory)
        if manifest is None:
            raise FileNotFoundError(f"{self.directory} has no {MANIFEST_NAME}: not a label directory")
        self.manifest = manifest
        self.examples = [
            ExampleRef(entry["id"], self.directory / shard["file"], entry["n_prompt"])
            for shard in manifest["shards"]
            for entry in shard["examples"]
        ]

    def __len__(self) -> int:
        return len(self.examples)

    @staticmethod
    def load(ref: ExampleRef) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids [T] int64, labels [L, Hkv, n_prompt] float32)``."""
        with safe_open(ref.shard, framework="pt") as shard:
            input_ids = shard.get_tensor(f"{ref.id}/input_ids").long()
            labels = shard.get_tensor(f"{ref.id}/labels").float()
        return input_ids, labels

    @property
    def label_kind(self) -> str:
        """``logit`` (CIS) or ``attention`` (KVzip); directories from before label kinds hold logits."""
        return self.manifest["header"].get("generation", {}).get("label_kind", "logit")

    @property
    def has_features(self) -> bool:
        """Whether the shards hold the prompts' head inputs (``data_gen --save-features``)."""
        return self.manifest["header"]["generation"].get("features_dtype") is not None

    @staticmethod
    def load_features(ref: ExampleRef) -> torch.Tensor:
        """The prompt's retaining-head inputs ``[L, n_prompt, F]`` as stored."""
        with safe_open(ref.shard, framework="pt") as shard:
            return shard.get_tensor(f"{ref.id}/features")


class FeatureReader:
    """Saved head inputs, the next example's read in a background thread while this step computes.

    One example's features are ``layers x tokens x F`` values (about 200 MB at 4K tokens for SmolLM2),
    so once they no longer fit the page cache, reading them takes as long as the heads-only step itself.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locret-features")
        self._pending: tuple[ExampleRef, Future[torch.Tensor]] | None = None

    def request(self, ref: ExampleRef) -> None:
        """Start reading ``ref``'s features; the next ``get(ref)`` returns them."""
        self._pending = (ref, self._pool.submit(LabelSet.load_features, ref))

    def get(self, ref: ExampleRef) -> torch.Tensor:
        """``ref``'s features ``[L, n_prompt, F]``: the requested read if it is this one, else a direct read."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == ref:
            return pending[1].result()
        return LabelSet.load_features(ref)
