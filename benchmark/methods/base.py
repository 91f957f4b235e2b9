"""The interface every benchmarked method implements, and the shared scorer-driven implementation.

A method says how to load the model it needs (``prepare``), how to build the cache for one prompt
(``make_cache``), whether a prompt can run at all (``fits``) and how to generate (``generate``: by default
Locret's chunked-prefill loop with that cache). Every eviction method therefore runs through the same loop,
with the same budget, chunk size, stabilizers and local tail; only the scorer differs.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

import locret
from locret.cache import LocretCache
from locret.config import BUDGET_ALLOCATIONS, POSITION_MODES, LocretConfig
from locret.generation import LocretOutput
from locret.prefill import new_cache, prefill_prompt
from locret.scorers import SCORERS, EntryScorer

from .profiles import load_shares

# What a method needs from the model's retaining heads (decides which loaded model it may share).
TRAINED = "trained"  # the trained heads from --heads (or the ones shipped for the model)
RANDOM = "random"  # fresh random heads (the untrained ablation)
NONE = "none"  # heads unused: any loaded copy of the backbone will do


def model_window(model) -> int:
    """The pre-trained context window (``max_position_embeddings``)."""
    return int(model.config.max_position_embeddings)


@dataclass
class Method:
    """One benchmarked method. Subclasses set ``name`` and override what differs."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    heads: ClassVar[str] = NONE
    # True: the budget does not change what the method does (full cache): run once, not once per budget.
    budget_independent: ClassVar[bool] = False
    # False: the runner gives the method each prompt without its context (``Sample.closed_book``).
    reads_context: ClassVar[bool] = True

    def params(self) -> dict:
        """The method's own parameters, recorded in every run's configuration."""
        return {"name": self.name, "heads": self.heads, **asdict(self)}

    def prepare(
        self,
        model_path,
        *,
        heads_dir=None,
        device: str | torch.device = "cpu",
        **kwargs,
    ):
        """Load the model this method runs on (a Locret model: every method uses the same attention path).
        ``kwargs`` (``dtype``, ``attn_implementation``, ``heads_dtype``...) go to ``locret.from_pretrained``."""
        if self.heads == TRAINED:
            if locret.loading.default_heads_for(model_path, heads_dir) is None:
                raise ValueError(
                    f"method {self.name!r} needs trained retaining heads: pass --heads DIR "
                    "(an adapter saved with locret.save_heads / locret-train)"
                )
            model = locret.from_pretrained(model_path, heads=heads_dir, **kwargs)
        elif self.heads == RANDOM:
            size = locret.adapter.read_heads_shape(heads_dir).hidden_size if heads_dir else None
            torch.manual_seed(0)  # the same random heads on every run
            model = locret.from_pretrained(model_path, random_heads=True, retaining_head_size=size, **kwargs)
        else:  # heads unused: whatever loads (the given adapter, the checkpoint's own, or fresh ones)
            model = locret.from_pretrained(model_path, heads=heads_dir, **kwargs)
        return model.to(device).eval()

    def locret_config(
        self, budget: int, chunk_size: int, n_stabilizers: int, n_local: int, prompt_length: int
    ) -> LocretConfig:
        """The settings for one prompt; ``n_local`` is the question's token count (see the runner)."""
        return LocretConfig(
            budget=budget, chunk_size=chunk_size, n_stabilizers=n_stabilizers, n_local=n_local
        )

    def make_cache(self, model, config: LocretConfig, track_positions: bool = False) -> LocretCache:
        """The cache for one prompt; ``track_positions``: it records each entry's prompt position (the runner's
        ``needle_held``; off where memory and speed are measured, as it costs 8 bytes per entry and head)."""
        raise NotImplementedError

    def fits(self, prompt_length: int, max_new_tokens: int, model) -> bool:
        """Whether the prompt can run meaningfully (eviction methods re-pack positions: always)."""
        return True

    def prefill_context(
        self, model, input_ids: torch.Tensor, config: LocretConfig, track_positions: bool = False
    ) -> LocretCache | None:
        """The cache after prefilling all but the question (the last ``config.n_local`` tokens), for every
        question on the same context to continue from; None when the method cannot share it."""
        cache = self.make_cache(model, config, track_positions)
        return prefill_prompt(model, input_ids, config, cache=cache)

    def generate(
        self,
        model,
        input_ids: torch.Tensor,
        config: LocretConfig,
        max_new_tokens: int,
        eos_token_id=None,
        context_cache: LocretCache | None = None,
        track_positions: bool = False,
    ) -> LocretOutput:
        """Generate for one prompt; from a copy of ``context_cache`` (see ``prefill_context``) when given. The
        output's ``past_key_values`` is the cache it ended with (None for methods without a LocretCache)."""
        if context_cache is None:
            cache = self.make_cache(model, config, track_positions)
        else:
            cache = copy.deepcopy(context_cache)
        return locret.generate(
            model, input_ids, config, max_new_tokens, eos_token_id=eos_token_id, cache=cache
        )


@dataclass
class ScorerMethod(Method):
    """An eviction method: Locret's loop with one scorer of ``locret.scorers.SCORERS``, built with
    ``scorer_params`` (its dataclass fields), the head scores pooled over ``score_pooling`` neighbours, the
    budget split over KV heads by ``budget_allocation`` (``LocretConfig``'s; ``max_head_budget`` with it; for
    ``"profile"``, ``profile`` names the shares, ``benchmark.head_budget_profile``'s output), and the retained
    entries' positions by ``position_mode`` (``LocretConfig``'s).

    ``heads`` defaults to what the scorer needs (trained heads for Locret's own scorer, none for the others);
    ``"random"`` gives the untrained ablation. ``name`` and ``description`` default to the scorer's.
    """

    scorer: str = "locret"
    scorer_params: dict[str, Any] = field(default_factory=dict)
    score_pooling: int = 1
    budget_allocation: str = "uniform"
    max_head_budget: int | None = None
    profile: str = ""
    position_mode: str = "repacked"
    heads: str = ""
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"unknown scorer {self.scorer!r}; valid scorers: {', '.join(SCORERS)}")
        scorer_cls = SCORERS[self.scorer]
        valid = [f.name for f in dataclasses.fields(scorer_cls)]
        unknown = sorted(set(self.scorer_params) - set(valid))
        if unknown:
            raise ValueError(
                f"scorer {self.scorer!r} has no parameter {', '.join(unknown)}; its parameters: "
                f"{', '.join(valid) or 'none'} (and every eviction method takes {', '.join(METHOD_SETTINGS)})"
            )
        self.make_scorer()  # the scorer checks its own values
        if self.budget_allocation not in BUDGET_ALLOCATIONS:
            raise ValueError(
                f"budget_allocation must be one of {BUDGET_ALLOCATIONS}, got {self.budget_allocation!r}"
            )
        if (self.budget_allocation == "profile") != bool(self.profile):
            raise ValueError(
                "budget_allocation=profile needs profile=NAME (benchmark.head_budget_profile), and only it"
            )
        self.head_shares = load_shares(self.profile) if self.profile else None
        if self.position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {self.position_mode!r}")
        self.heads = self.heads or (TRAINED if scorer_cls.uses_retaining_heads else NONE)
        if self.heads not in (TRAINED, RANDOM, NONE):
            raise ValueError(f"heads must be one of {TRAINED}, {RANDOM}, {NONE}; got {self.heads!r}")
        self.name = self.name or self.scorer
        self.description = self.description or (scorer_cls.__doc__ or self.scorer).strip().splitlines()[0]

    def make_scorer(self) -> EntryScorer:
        return SCORERS[self.scorer](**self.scorer_params)

    def params(self) -> dict:
        """Name, heads, the pooling of head scores, a non-uniform budget allocation, a non-default position
        mode, and the scorer parameters that were set."""
        pooling = {"score_pooling": self.score_pooling}
        uses_heads = SCORERS[self.scorer].uses_retaining_heads or self.score_pooling != 1
        allocation = {"budget_allocation": self.budget_allocation, "max_head_budget": self.max_head_budget}
        if self.profile:
            allocation["profile"] = self.profile
        return {
            "name": self.name,
            "heads": self.heads,
            **(pooling if uses_heads else {}),
            **(allocation if self.budget_allocation != "uniform" else {}),
            **({"position_mode": self.position_mode} if self.position_mode != "repacked" else {}),
            **self.scorer_params,
        }

    def locret_config(self, budget, chunk_size, n_stabilizers, n_local, prompt_length) -> LocretConfig:
        """The settings for one prompt; the only place a method's ``score_pooling``, budget allocation and
        position mode enter a config."""
        return LocretConfig(
            budget=budget,
            chunk_size=chunk_size,
            n_stabilizers=n_stabilizers,
            n_local=n_local,
            score_pooling=self.score_pooling,
            budget_allocation=self.budget_allocation,
            max_head_budget=self.max_head_budget,
            head_shares=self.head_shares,
            position_mode=self.position_mode,
        )

    def make_cache(self, model, config: LocretConfig, track_positions: bool = False) -> LocretCache:
        return new_cache(model, config, scorer=self.make_scorer(), track_positions=track_positions)


# What ``name:key=value`` may set on any eviction method besides its scorer's own parameters.
METHOD_SETTINGS = (
    "score_pooling",
    "budget_allocation",
    "max_head_budget",
    "profile",
    "position_mode",
    "heads",
)


def scorer_method(scorer: str, **settings) -> ScorerMethod:
    """A ``ScorerMethod`` from flat settings: ``score_pooling``, ``heads``, ``name``, ``description`` are the
    method's, every other key is a parameter of the scorer."""
    own = {key: settings.pop(key) for key in (*METHOD_SETTINGS, "name", "description") if key in settings}
    return ScorerMethod(scorer=scorer, scorer_params=settings, **own)
