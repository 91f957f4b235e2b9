"""Inference settings of Locret: budget, chunking, stabilizers, local tail, positions."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

PositionMode = Literal["repacked", "absolute"]
POSITION_MODES: tuple[str, ...] = ("repacked", "absolute")
EvictionKernel = Literal["torch", "triton"]
EVICTION_KERNELS: tuple[str, ...] = ("torch", "triton")
BudgetAllocation = Literal["uniform", "adaptive", "profile"]
BUDGET_ALLOCATIONS: tuple[str, ...] = ("uniform", "adaptive", "profile")
HeadShares = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class LocretConfig:
    """How Locret prefills and evicts (docs/design.md, section 4).

    Attributes:
        budget: cache entries kept per KV head per layer after each prefill chunk (``b``).
        chunk_size: prompt tokens per prefill forward (``B``); peak cache per layer is ``budget + chunk_size``.
        n_stabilizers: newest entries protected at every eviction so local context stays continuous (``n_s``).
        n_local: last prompt tokens run after the evicting prefill and never evicted (``n_loc``); usually
            the question, so its entries are always attended.
        position_mode: ``"repacked"`` (default) gives the retained cache contiguous positions ``0..len-1`` on
            every forward, so the largest position is the cache length (at most ``budget + chunk_size``
            while prefilling, ``budget + n_local`` for the local tail, then one more per generated token, or
            at most ``decode_budget + 1``) and inputs may exceed the model's window; ``"absolute"`` keeps
            each entry's original position (cannot go past the window).
        decode_budget: if set, the cache is also evicted while decoding so it never holds more than this many
            entries after a step; ``None`` keeps every generated token (the paper's behaviour).
        eviction_kernel: ``"torch"`` (reference, any device) or ``"triton"`` (fused kernels of
            :mod:`locret.eviction_triton`, CUDA with Triton installed); both keep exactly the same entries.
            Not recorded in a heads adapter's settings: it changes speed, not results.
        score_pooling: odd window over which each entry's retaining-head score becomes the maximum of its
            neighbours' raw scores, so an important span (a number, a name) is kept or dropped whole instead
            of losing single tokens. Chunk boundaries do not matter: the result is what pooling the whole
            prompt's scores at once would give. Needs ``n_stabilizers >= score_pooling // 2``. ``1``
            (default) is the paper's unpooled score.
        budget_allocation: ``"uniform"`` (default, the paper's): every KV head of a layer keeps ``budget``
            entries. ``"adaptive"``: a layer keeps ``budget x KV heads`` entries in total, the top of one
            ranking over all its KV heads (the newest ``n_stabilizers`` of each head forced in), so a head
            whose entries score higher holds more of them (as AdaKV allocates; a fact one head attends to
            is not lost to another head's filler). Each head's entries sit at the right of the layer's slots
            behind left pads that attention masks, so a layer's memory is its longest head's; only useful
            with scores comparable across heads. Torch eviction kernel, batches without padding.
            ``"profile"``: KV head ``h`` of layer ``l`` keeps ``round(head_shares[l][h] x budget)`` entries (at
            least one; its newest ``n_stabilizers`` forced in), a fixed share measured once per model
            (``benchmark.head_budget_profile``: how KVzip's one global ranking shares a budget between heads,
            which barely changes from text to text), stored in the same left-padded slots as ``"adaptive"``.
        max_head_budget: ``"adaptive"`` or ``"profile"``: the most entries one KV head may keep (bounds memory
            at ``max_head_budget`` slots per layer); ``None``: no bound beyond the allocation's own.
        head_shares: ``"profile"`` only: per layer, per KV head, the multiple of ``budget`` the head keeps
            (their mean is usually 1, so the total matches a uniform cache's).
    """

    budget: int = 1024
    chunk_size: int = 512
    n_stabilizers: int = 128
    n_local: int = 64
    position_mode: PositionMode = "repacked"
    decode_budget: int | None = None
    eviction_kernel: EvictionKernel = "torch"
    score_pooling: int = 1
    budget_allocation: BudgetAllocation = "uniform"
    max_head_budget: int | None = None
    head_shares: HeadShares | None = None

    def __post_init__(self) -> None:
        if isinstance(self.head_shares, list | tuple):  # JSON gives lists; keep the config hashable
            shares = tuple(tuple(row) if isinstance(row, list | tuple) else row for row in self.head_shares)
            object.__setattr__(self, "head_shares", shares)
        checks = [
            (
                isinstance(self.budget, int) and self.budget >= 1,
                f"budget must be an integer >= 1, got {self.budget!r}",
            ),
            (
                isinstance(self.chunk_size, int) and self.chunk_size >= 1,
                f"chunk_size must be an integer >= 1, got {self.chunk_size!r}",
            ),
            (
                isinstance(self.n_stabilizers, int) and 0 <= self.n_stabilizers < self.budget,
                f"n_stabilizers must satisfy 0 <= n_stabilizers < budget ({self.budget}), got {self.n_stabilizers!r}",
            ),
            (
                isinstance(self.n_local, int) and self.n_local >= 0,
                f"n_local must be an integer >= 0, got {self.n_local!r}",
            ),
            (
                self.position_mode in POSITION_MODES,
                f"position_mode must be one of {POSITION_MODES}, got {self.position_mode!r}",
            ),
            (
                self.decode_budget is None
                or (
                    isinstance(self.decode_budget, int)
                    and self.decode_budget > self.n_stabilizers + self.n_local
                ),
                "decode_budget must be None or an integer > n_stabilizers + n_local "
                f"({self.n_stabilizers} + {self.n_local}), got {self.decode_budget!r}",
            ),
            (
                self.eviction_kernel in EVICTION_KERNELS,
                f"eviction_kernel must be one of {EVICTION_KERNELS}, got {self.eviction_kernel!r}",
            ),
            (
                isinstance(self.score_pooling, int)
                and self.score_pooling >= 1
                and self.score_pooling % 2 == 1,
                f"score_pooling must be an odd integer >= 1, got {self.score_pooling!r}",
            ),
            (
                not (isinstance(self.score_pooling, int) and isinstance(self.n_stabilizers, int))
                or self.n_stabilizers >= self.score_pooling // 2,
                f"score_pooling {self.score_pooling} needs n_stabilizers >= {self.score_pooling // 2} (the "
                f"newest entries whose scores the next chunk completes), got {self.n_stabilizers}",
            ),
            (
                self.budget_allocation in BUDGET_ALLOCATIONS,
                f"budget_allocation must be one of {BUDGET_ALLOCATIONS}, got {self.budget_allocation!r}",
            ),
            (
                self.max_head_budget is None
                or (
                    self.budget_allocation != "uniform"
                    and isinstance(self.max_head_budget, int)
                    and isinstance(self.budget, int)
                    and self.max_head_budget >= self.budget
                ),
                f"max_head_budget must be None or, with budget_allocation 'adaptive' or 'profile', an integer "
                f">= budget ({self.budget}), got {self.max_head_budget!r}",
            ),
            (
                self.budget_allocation == "uniform" or self.eviction_kernel == "torch",
                f"budget_allocation={self.budget_allocation!r} evicts with the torch kernel only "
                "(eviction_kernel='torch')",
            ),
            (
                (self.budget_allocation == "profile") == (self.head_shares is not None),
                "budget_allocation='profile' needs head_shares (per layer, per KV head), and only it takes them",
            ),
            (
                self.head_shares is None or _valid_shares(self.head_shares),
                "head_shares must be non-empty rows of equal length (one per KV head) of finite numbers >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    def head_budgets(self, layer_idx: int, keep: int) -> tuple[int, ...]:
        """``"profile"``: the entries each KV head of layer ``layer_idx`` keeps when the cache keeps ``keep``
        per head on average (``budget`` while prefilling, ``decode_budget`` while decoding)."""
        counts = (max(1, round(share * keep)) for share in self.head_shares[layer_idx])
        if self.max_head_budget is None:
            return tuple(counts)
        return tuple(min(count, self.max_head_budget) for count in counts)


def _valid_shares(shares) -> bool:
    rows = [row for row in shares if isinstance(row, tuple) and row]
    if len(rows) != len(shares) or not rows or len({len(row) for row in rows}) != 1:
        return False
    return all(isinstance(x, int | float) and math.isfinite(x) and x >= 0 for row in rows for x in row)


def default_stabilizers(budget: int) -> int:
    """Stabilizers when a tool's caller gives none: a quarter of the budget keeps the newest text continuous
    while leaving most of the cache to the heads' choice (the paper's settings, below, use 2500 explicitly)."""
    return budget // 4


# The paper's reference settings (docs/design.md, section 4), by base model type.
PAPER_SETTINGS: dict[str, LocretConfig] = {
    "phi3": LocretConfig(budget=6000, chunk_size=3072, n_stabilizers=2500, n_local=100),
    "llama": LocretConfig(budget=16384, chunk_size=1024, n_stabilizers=2500, n_local=100),
}
