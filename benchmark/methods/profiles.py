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


def allocation_settings(name: str) -> dict:
    """``LocretConfig`` settings for a script's ``--allocation`` name: uniform, adaptive, or profile:NAME."""
    kind, _, profile = name.partition(":")
    if kind == "profile" and profile:
        return {"budget_allocation": "profile", "head_shares": load_shares(profile)}
    if kind in ("uniform", "adaptive") and not profile:
        return {"budget_allocation": kind}
    raise ValueError(f"--allocation takes uniform, adaptive or profile:NAME, got {name!r}")
