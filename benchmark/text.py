"""Token counting, truncation and jsonl reading shared by all task loaders."""

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from benchmark.sample import Sample

Counter = Callable[[str], int]


class Tokenizer(Protocol):
    """What the loaders need from a tokenizer (a HF tokenizer satisfies it)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def make_counter(tokenizer: Tokenizer | Counter) -> Counter:
    """Return a text -> token-count function from a tokenizer or a count function."""
    encode = getattr(tokenizer, "encode", None)
    if encode is not None:
        return lambda text: len(encode(text))
    if callable(tokenizer):
        return tokenizer
    raise TypeError("tokenizer must have encode(str) -> list[int] or be a callable count")


def truncate_tokens(
    text: str,
    max_tokens: int,
    tokenizer: Tokenizer,
    keep: Literal["middle", "head"] = "middle",
) -> str:
    """Cut ``text`` to at most ``max_tokens`` tokens.

    ``middle`` keeps the first and last halves (InfiniteBench's rule: task
    instructions and questions sit at both ends); ``head`` keeps the beginning
    (L-Eval's rule). Special tokens (BOS) are dropped so none lands mid-text.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    special = set(getattr(tokenizer, "all_special_ids", ()))
    ids = [i for i in tokenizer.encode(text) if i not in special]
    if len(ids) <= max_tokens:
        return text
    if keep == "head":
        return tokenizer.decode(ids[:max_tokens])
    head = max_tokens // 2
    tail = max_tokens - head
    return tokenizer.decode(ids[:head] + ids[len(ids) - tail :])


def fit_to_length(
    sample: Sample,
    max_tokens: int,
    tokenizer: Tokenizer,
    keep: Literal["middle", "head"],
    question_tokens: int | None = None,
) -> Sample:
    """Truncate the context in place so the whole prompt is at most ``max_tokens`` tokens.

    ``question_tokens`` reserves room for a question (default: this sample's own). Questions on one document
    reserve their longest, so the document is cut the same way for each and its prefill can be shared.
    """
    count = make_counter(tokenizer)
    reserve = count(sample.question) if question_tokens is None else question_tokens
    budget = max_tokens - count(sample.prefix) - reserve
    if budget <= 0:
        raise ValueError(f"{max_tokens} tokens leave no room for the context of {sample.id}")
    sample.context = truncate_tokens(sample.context, budget, tokenizer, keep=keep)
    sample.meta["max_tokens"] = max_tokens
    return sample


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield records of a jsonl file (gzipped when the name ends in .gz), lazily."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def resolve_file(data_dir: str | Path, name: str, subdir: str) -> Path:
    """Find ``name`` given a file path, its directory, or the data root holding ``subdir``."""
    root = Path(data_dir)
    if root.is_file():
        return root
    for candidate in (root / name, root / subdir / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found in {root} or {root / subdir}")
