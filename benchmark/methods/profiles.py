"""Per-head budget shares measured by ``benchmark.head_budget_profile``, by name, for any method to use."""

from __future__ import annotations

import json
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parents[1] / "results" / "head_budget_profiles"


def load_shares(name: str) -> tuple[tuple[float, ...], ...]:
    """The mean quotas (``[layers][KV heads]``, multiples of the budget) of ``PROFILE_DIR / <name>.json``: a
    name, not a path, because method specs name the case folders."""
    path = PROFILE_DIR / f"{name}.json"
    if "/" in name or not path.is_file():
        raise ValueError(f"no head budget profile {name!r}: expected {path}")
    return tuple(tuple(float(x) for x in row) for row in json.loads(path.read_text("utf-8"))["quota"])
