"""Entry scorers: what decides which cache entries survive eviction.

Locret's own scorer asks the retaining heads; the others are the training-free baselines of the paper's
comparison, run through the same chunked prefill and the same budget. Each is one small dataclass in its
own file with the same two hooks (see ``EntryScorer``); adding a method is one new file and one line below.
"""

from .base import EntryScorer
from .choice import ScorerChoice
from .h2o import H2OScorer
from .lines import LineScorer
from .reconstruction import ReconstructionScorer
from .retaining_head import RetainingHeadScorer
from .snapkv import SnapKVScorer
from .streaming import StreamingLLMScorer
from .surprisal import SurprisalScorer

SCORERS: dict[str, type[EntryScorer]] = {
    "locret": RetainingHeadScorer,
    "streaming_llm": StreamingLLMScorer,
    "h2o": H2OScorer,
    "snapkv": SnapKVScorer,
    "reconstruct": ReconstructionScorer,
    "surprisal": SurprisalScorer,
    "lines": LineScorer,
}

__all__ = [
    "SCORERS",
    "EntryScorer",
    "ScorerChoice",
    "H2OScorer",
    "LineScorer",
    "ReconstructionScorer",
    "RetainingHeadScorer",
    "SnapKVScorer",
    "StreamingLLMScorer",
    "SurprisalScorer",
]
