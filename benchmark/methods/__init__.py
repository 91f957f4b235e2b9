"""Benchmarked methods, one file each, all behind the ``Method`` interface (``base.py``).

Adding a method is one new file with a ``Method`` subclass and one line in ``METHODS`` below.
"""

from __future__ import annotations

from .base import Method, ScorerMethod
from .full import FullCache
from .h2o import H2O
from .locret_pooled import LocretPooled
from .locret_random import LocretRandomHeads, LocretRandomHeadsPooled
from .locret_trained import Locret
from .longheads import LongHeads
from .needle_oracle import NeedleOracle
from .snapkv import SnapKV
from .streaming_llm import StreamingLLM

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        FullCache,
        Locret,
        LocretPooled,
        LocretRandomHeads,
        LocretRandomHeadsPooled,
        StreamingLLM,
        H2O,
        SnapKV,
        LongHeads,
        NeedleOracle,
    )
}


def get_method(name: str, **params) -> Method:
    """An instance of the method registered as ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name](**params)


__all__ = ["METHODS", "Method", "ScorerMethod", "get_method"]
