"""Benchmarked methods, all behind the ``Method`` interface (``base.py``).

Every scorer of ``locret.scorers.SCORERS`` is a method of the same name (a new baseline is one scorer file
and one line there); a few named settings of them are registered below; methods that are not eviction by a
scorer (the full cache, the closed book, KVzip, LongHeads) are one file each. Any method takes settings in
its name: ``snapkv:window=64``, ``locret:score_pooling=7:heads=random`` (``get_method``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from functools import partial

from locret.scorers import SCORERS

from .base import RANDOM, Method, ScorerMethod, scorer_method
from .closed_book import ClosedBook
from .full import FullCache
from .kvzip import KVzip
from .longheads import LongHeads
from .needle_oracle import NeedleOracle
from .passage_oracle import PassageOracle

# Named settings of a scorer method: name -> (scorer, settings, description).
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "locret_pooled": (
        "locret",
        {"score_pooling": 7},
        "Locret, trained heads, scores max-pooled over 7 neighbouring tokens",
    ),
    "locret_random": (
        "locret",
        {"heads": RANDOM},
        "Locret loop with random retaining heads (same width as --heads, seed 0)",
    ),
    "locret_random_pooled": (
        "locret",
        {"heads": RANDOM, "score_pooling": 7},
        "random retaining heads, scores max-pooled over 7 neighbouring tokens",
    ),
}

METHODS: dict[str, Callable[..., Method]] = {
    cls.name: cls
    for cls in (
        FullCache,
        ClosedBook,
        KVzip,
        LongHeads,
    )
}
METHODS["needle_oracle"] = NeedleOracle  # a scorer method bound to each sample's needle (``for_sample``)
METHODS["passage_oracle"] = PassageOracle  # the same, bound to each sample's documents
METHODS.update({name: partial(scorer_method, name) for name in SCORERS})
METHODS.update(
    {
        name: partial(scorer_method, scorer, name=name, description=description, **settings)
        for name, (scorer, settings, description) in VARIANTS.items()
    }
)


def parse_value(text: str) -> int | float | bool | str:
    """``64`` -> 64, ``0.5`` -> 0.5, ``true`` -> True, ``none`` -> None; anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_method(spec: str) -> tuple[str, dict]:
    """``"snapkv:window=64:kernel_size=5"`` -> ``("snapkv", {"window": 64, "kernel_size": 5})``."""
    name, *items = spec.split(":")
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"method {spec!r}: settings are key=value after the name, got {item!r}")
        settings[key] = parse_value(value)
    return name, settings


def get_method(spec: str, **params) -> Method:
    """The method registered as ``spec``'s name, with the settings ``spec`` carries (``name:key=value...``,
    which win over ``params``); a method given settings is named by its whole spec."""
    name, settings = parse_method(spec)
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    try:
        method = METHODS[name](**{**params, **settings})
    except TypeError as err:  # a dataclass method given a field it lacks
        valid = ", ".join(f.name for f in fields(METHODS[name])) or "none"
        raise ValueError(
            f"method {name!r} takes no setting of {sorted(settings)}; its settings: {valid}"
        ) from err
    if settings:
        method.name = spec
    return method


__all__ = ["METHODS", "VARIANTS", "Method", "ScorerMethod", "get_method", "parse_method"]
