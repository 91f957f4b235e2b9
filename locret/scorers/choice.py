"""A scorer named by its registry key and settings: what a heads adapter recommends, as JSON.

Scorers carry per-prompt state, so an adapter records the choice, not an instance, and every new cache
builds its own (``ScorerChoice.build``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from .base import EntryScorer

# Fields a recorded choice cannot hold: objects, not settings (a tokenizer is found from the model).
UNRECORDED_FIELDS = ("tokenizer",)


def registry() -> dict[str, type[EntryScorer]]:
    from . import SCORERS  # the package imports this module first

    return SCORERS


def recordable_fields(scorer_cls: type[EntryScorer]) -> list[str]:
    return [f.name for f in dataclasses.fields(scorer_cls) if f.init and f.name not in UNRECORDED_FIELDS]


@dataclass(frozen=True)
class ScorerChoice:
    """``name`` (a key of ``locret.scorers.SCORERS``) and the settings that differ from or equal its
    defaults (JSON values); ``build()`` makes a fresh scorer."""

    name: str
    settings: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        scorers = registry()
        if self.name not in scorers:
            raise ValueError(f"unknown scorer {self.name!r} (known: {sorted(scorers)})")
        unknown = self.settings.keys() - set(recordable_fields(scorers[self.name]))
        if unknown:
            raise ValueError(
                f"the {self.name} scorer has no settings {sorted(unknown)} "
                f"(it has {recordable_fields(scorers[self.name])})"
            )
        self.build()  # the scorer checks its own values

    @classmethod
    def of(cls, scorer: EntryScorer) -> ScorerChoice:
        """The choice that builds a scorer equal to ``scorer`` (every recordable setting written out)."""
        names = {scorer_cls: name for name, scorer_cls in registry().items()}
        if type(scorer) not in names:
            raise ValueError(f"{type(scorer).__name__} is not a registered scorer (locret.scorers.SCORERS)")
        return cls(names[type(scorer)], {k: getattr(scorer, k) for k in recordable_fields(type(scorer))})

    def build(self) -> EntryScorer:
        return registry()[self.name](**self.settings)

    def to_dict(self) -> dict:
        return {"name": self.name, "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, block, source: str | os.PathLike) -> ScorerChoice | None:
        """Parse an adapter's ``scorer`` block (None: none recorded); a ValueError names ``source``."""
        if block is None:
            return None
        if not isinstance(block, dict) or set(block) != {"name", "settings"}:
            raise ValueError(
                f"{source}: 'scorer' must be null or an object with exactly 'name' and 'settings'"
            )
        if not isinstance(block["settings"], dict):
            raise ValueError(f"{source}: the scorer's 'settings' must be an object")
        try:
            return cls(block["name"], dict(block["settings"]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: invalid 'scorer': {err}") from None
