"""locret: Locret (arXiv 2410.01805) for transformers: trained retaining heads and chunked prefill with KV
eviction, so a frozen LLM reads inputs far longer than its memory or window allows."""

from . import compat  # noqa: F401  (first: an ImportError outside the supported transformers range)
from .adapter import load_heads, save_heads
from .cache import LocretCache
from .config import PAPER_SETTINGS, LocretConfig
from .generation import LocretOutput, generate, prefill_prompt
from .heads import RetainingHead
from .loading import attach_retaining_heads, from_pretrained
from .models import (
    LocretLlamaConfig,
    LocretLlamaForCausalLM,
    LocretPhi3Config,
    LocretPhi3ForCausalLM,
    register_auto_classes,
)
from .prefill import new_cache
from .session import Session
from .version import __version__

register_auto_classes()

__all__ = [
    "__version__",
    "PAPER_SETTINGS",
    "LocretCache",
    "LocretConfig",
    "LocretLlamaConfig",
    "LocretLlamaForCausalLM",
    "LocretOutput",
    "LocretPhi3Config",
    "LocretPhi3ForCausalLM",
    "RetainingHead",
    "Session",
    "attach_retaining_heads",
    "from_pretrained",
    "generate",
    "load_heads",
    "new_cache",
    "prefill_prompt",
    "save_heads",
]
