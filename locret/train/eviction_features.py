"""Retaining-head inputs as inference computes them: during a chunked prefill that evicts.

CIS labels come from one full-attention forward, and by default so do the head inputs saved beside them. At
inference each chunk's hidden states attend only to what the cache kept, so from the first eviction on the
heads score inputs unlike any they were trained on. Recording the inputs of an evicting prefill (run with
given heads: the cache those heads would keep, as in DAgger) lets training see what inference feeds them,
while the labels stay the full-attention ones: what the answer needs.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..compat import CACHE_KWARG
from ..config import LocretConfig
from ..generation import prefill_prompt
from ..hooks import forward_hooks


@torch.no_grad()
def features_under_eviction(
    model, prompt_ids: torch.Tensor, config: LocretConfig, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """Head inputs ``[num_layers, n_prompt, F]`` of every prompt token, as ``prefill_prompt`` with ``config``
    computes them (the model's own heads choose what is evicted). ``config.n_local`` is ignored: the whole
    prompt is prefilled, its last token by a plain forward on the evicted cache."""
    ids = prompt_ids.reshape(1, -1).to(next(model.parameters()).device)
    config = replace(config, n_local=0)
    attentions = [layer.self_attn for layer in model.model.layers]
    recorded: list[list[torch.Tensor]] = [[] for _ in attentions]

    def recorder(sink: list[torch.Tensor]):
        def record(module, args, kwargs) -> None:
            hidden_states = args[0] if args else kwargs["hidden_states"]
            features = torch.cat(module.projections(hidden_states), dim=-1)
            sink.append(features[0].to(dtype))  # batch row 0: [T, F]

        return record

    hooks = [(attention, recorder(sink)) for attention, sink in zip(attentions, recorded, strict=True)]
    with forward_hooks(hooks, pre=True, with_kwargs=True):
        cache = prefill_prompt(model, ids, config)
        model.model(input_ids=ids[:, cache.get_seq_length() :], use_cache=True, **{CACHE_KWARG: cache})
    return torch.stack([torch.cat(sink) for sink in recorded])
