"""LongHeads (Lu et al. 2024, arXiv 2402.10685), re-implemented on Locret's attention modules.

Training-free context *extension*, not memory saving: every token's pre-RoPE key and value is kept. The
context is cut into chunks of ``window_size`` (w) tokens; each complete chunk gets a per-head summary
key. A query attends, per attention head, to at most ``k = span // w`` chunks: the first chunk, its own
(partial) chunk, the chunk before it, and the ``k - 3`` other earlier chunks whose summary keys score
highest against the query. The gathered keys are re-rotated with contiguous positions ``0..R-1``, the
query sitting at ``R - 1``, so positions never exceed ``span`` (which must fit the model's window).

Faithful to the reference (docs/design.md, section 7):
- chunk summaries: q and k rotated with local positions ``0..w-1``; bidirectional attention inside the
  chunk; ``c_v`` = mean of the outputs; ``c_k = softmax(c_v . K) . K`` over the locally rotated keys;
- selection per *query head* (with GQA the gather maps each query head to its KV head) by the unrotated
  query against ``c_k``, future chunks excluded, chunk 0 / the previous chunk / the own chunk forced,
  chosen chunks kept in ascending order; contiguous re-rotation; causal only inside the own chunk;
- queries before ``span`` (``begin_selective_length = span``) use ordinary causal attention with absolute
  positions (identical to the vanilla model);
- decoding: the same rule for the single new query, summaries computed whenever a chunk completes.

Simplifications (stated, not hidden):
- during prefill, all queries of one w-chunk share one selection per head, chosen with the *sum* of their
  unrotated queries (the reference selects per query; per-query gathers are far too slow on CPU).
  Decoding selects per query, as the reference does;
- batch size 1; no CPU offload (everything stays on the model's device);
- only pre-RoPE queries of the current incomplete chunk are kept (all a summary needs), not all queries.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from locret.generation import LocretOutput, decode
from locret.rope import apply_rope


@dataclass(frozen=True)
class LongHeadsConfig:
    """``window_size`` w (chunk length) and ``span`` L (tokens one query attends to; k = L // w >= 3)."""

    window_size: int = 256
    span: int = 4096

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.span // self.window_size < 3:
            raise ValueError(
                f"LongHeads needs span >= 3 * window_size (chunk 0, previous, own), got "
                f"span={self.span}, window_size={self.window_size}"
            )

    @property
    def n_chunks(self) -> int:
        return self.span // self.window_size


class _Growing:
    """A ``[B, H, N, D]`` tensor appended along N with amortised doubling (no O(N^2) re-copies)."""

    def __init__(self) -> None:
        self.data: torch.Tensor | None = None
        self.length = 0

    def append(self, x: torch.Tensor) -> None:
        need = self.length + x.shape[2]
        if self.data is None or need > self.data.shape[2]:
            capacity = max(need, 2 * (0 if self.data is None else self.data.shape[2]), 256)
            grown = x.new_empty(*x.shape[:2], capacity, x.shape[3])
            if self.data is not None:
                grown[:, :, : self.length] = self.data[:, :, : self.length]
            self.data = grown
        self.data[:, :, self.length : need] = x
        self.length = need

    def view(self) -> torch.Tensor:
        assert self.data is not None
        return self.data[:, :, : self.length]

    def nbytes(self) -> int:
        return (
            0 if self.data is None else self.length * self.data[:, :, :1].numel() * self.data.element_size()
        )


class LongHeadsLayer:
    """One layer's state: all pre-RoPE keys/values, the incomplete chunk's queries, chunk summary keys."""

    def __init__(self) -> None:
        self.keys = _Growing()
        self.values = _Growing()
        self.summaries = _Growing()  # c_k per query head, [B, H, n_complete_chunks, D]
        self.pending_queries: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.keys.length

    def nbytes(self) -> int:
        pending = 0 if self.pending_queries is None else self.pending_queries.numel()
        pending *= 0 if self.pending_queries is None else self.pending_queries.element_size()
        return self.keys.nbytes() + self.values.nbytes() + self.summaries.nbytes() + pending


class LongHeadsState:
    """Everything LongHeads keeps for one prompt, for every layer, and the peak of its size."""

    def __init__(self, num_layers: int, config: LongHeadsConfig) -> None:
        self.config = config
        self.layers = [LongHeadsLayer() for _ in range(num_layers)]
        self.peak_bytes = 0

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)

    def update_peak(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.nbytes())


def _rope(attention, length: int, like: torch.Tensor):
    return attention.locret_rope.table(length, like.dtype, like.device)


def _summarise(attention, layer: LongHeadsLayer, chunk: int, w: int) -> None:
    """Append chunk ``chunk``'s summary key ``c_k`` (per query head) to ``layer.summaries``."""
    queries = layer.pending_queries  # [B, H, w, D], pre-RoPE
    keys = layer.keys.view()[:, :, chunk * w : (chunk + 1) * w]
    values = layer.values.view()[:, :, chunk * w : (chunk + 1) * w]
    cos, sin = _rope(attention, w, queries)
    q_rot, k_rot = apply_rope(queries, cos, sin), apply_rope(keys, cos, sin)
    heads, kv_heads = queries.shape[1], keys.shape[1]
    k_rot = k_rot.repeat_interleave(heads // kv_heads, dim=1)
    values = values.repeat_interleave(heads // kv_heads, dim=1)
    out = F.scaled_dot_product_attention(q_rot, k_rot, values, scale=attention.scaling)  # bidirectional
    c_v = out.float().mean(dim=2)  # [B, H, D]
    weights = torch.softmax(torch.einsum("bhd,bhtd->bht", c_v, k_rot.float()), dim=-1)
    c_k = torch.einsum("bht,bhtd->bhd", weights, k_rot.float())
    layer.summaries.append(c_k[:, :, None].to(queries.dtype))


def _attend(attention, layer: LongHeadsLayer, query: torch.Tensor, first: int, cfg: LongHeadsConfig):
    """Attention output ``[B, H, n, D]`` of pre-RoPE queries at positions ``first..first+n-1`` (one chunk)."""
    w, k = cfg.window_size, cfg.n_chunks
    batch, heads, n, dim = query.shape
    own = first // w
    offset = first - own * w
    keys, values = layer.keys.view(), layer.values.view()
    kv_heads = keys.shape[1]
    if own < k:  # below begin_selective_length: ordinary causal attention, absolute positions
        total = first + n
        cos, sin = _rope(attention, total, query)
        q_rot = apply_rope(query, cos[first:total], sin[first:total])
        k_rot = apply_rope(keys[:, :, :total], cos, sin)
        mask = torch.ones(n, total, dtype=torch.bool, device=query.device).tril(first)
        return F.scaled_dot_product_attention(
            q_rot, k_rot, values[:, :, :total], attn_mask=mask, scale=attention.scaling, enable_gqa=True
        )
    if batch != 1:
        raise ValueError("LongHeads here runs batch size 1 only")
    # Score the middle chunks 1..own-2 with the unrotated (summed) queries against the summary keys.
    candidates = layer.summaries.view()[0, :, 1 : own - 1]  # [H, own-2, D]
    scores = torch.einsum("hd,hcd->hc", query[0].float().sum(dim=1), candidates.float())
    chosen = scores.topk(k - 3, dim=-1).indices.sort(dim=-1).values + 1  # [H, k-3]
    first_chunk = torch.zeros(heads, 1, dtype=torch.long, device=query.device)
    chunks = torch.cat([first_chunk, chosen, torch.full_like(first_chunk, own - 1)], dim=-1)  # [H, k-1]
    span = torch.arange(w, device=query.device)
    tokens = (chunks[:, :, None] * w + span).flatten(1)  # [H, (k-1) w]
    own_tokens = torch.arange(own * w, first + n, device=query.device).expand(heads, -1)
    tokens = torch.cat([tokens, own_tokens], dim=-1)  # [H, R]
    kv_of_head = torch.arange(heads, device=query.device) // (heads // kv_heads)
    gathered_k = keys[0][kv_of_head[:, None], tokens][None]  # [1, H, R, D]
    gathered_v = values[0][kv_of_head[:, None], tokens][None]
    total = tokens.shape[1]
    cos, sin = _rope(attention, total, query)
    before = (k - 1) * w
    q_rot = apply_rope(query, cos[before + offset : total], sin[before + offset : total])
    k_rot = apply_rope(gathered_k, cos, sin)
    mask = torch.ones(n, total, dtype=torch.bool, device=query.device).tril(before + offset)
    return F.scaled_dot_product_attention(q_rot, k_rot, gathered_v, attn_mask=mask, scale=attention.scaling)


def _forward(attention, state: LongHeadsState):
    """A replacement ``forward`` for one Locret attention module (positions/mask from the model ignored)."""

    def forward(self, hidden_states, *args, **kwargs):
        cfg, w = state.config, state.config.window_size
        layer = state.layers[self.layer_idx]
        batch, length = hidden_states.shape[:2]
        query, key, value, _ = self.project_qkv(hidden_states)
        start = layer.length
        layer.keys.append(key)
        layer.values.append(value)
        outputs, t = [], 0
        while t < length:
            position = start + t
            end = min(length, (position // w + 1) * w - start)  # up to the end of this query's chunk
            block = query[:, :, t:end]
            outputs.append(_attend(self, layer, block, position, cfg))
            pending = layer.pending_queries
            layer.pending_queries = block if pending is None else torch.cat([pending, block], dim=2)
            if layer.pending_queries.shape[2] == w:
                _summarise(self, layer, (start + end) // w - 1, w)
                layer.pending_queries = None
            t = end
        state.update_peak()
        output = torch.cat(outputs, dim=2).transpose(1, 2).reshape(batch, length, -1)
        return self.o_proj(output.contiguous()), None

    return types.MethodType(forward, attention)


@contextlib.contextmanager
def longheads_attention(model, state: LongHeadsState) -> Iterator[None]:
    """Route every decoder layer's attention through LongHeads for the duration of the block."""
    attentions = [layer.self_attn for layer in model.model.layers]
    for attention in attentions:
        if not hasattr(attention, "project_qkv"):
            raise ValueError("LongHeads needs a Locret model (locret.from_pretrained) for pre-RoPE Q/K/V")
        attention.forward = _forward(attention, state)
    try:
        yield
    finally:
        for attention in attentions:
            del attention.forward


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    config: LongHeadsConfig,
    max_new_tokens: int,
    *,
    chunk_size: int = 512,
    eos_token_id: int | list[int] | None = None,
) -> LocretOutput:
    """Greedy LongHeads generation; prefill in forwards of ``chunk_size`` tokens (speed only)."""
    if input_ids.shape[0] != 1:
        raise ValueError("LongHeads here runs batch size 1 only")
    state = LongHeadsState(model.config.num_hidden_layers, config)
    sync = torch.cuda.synchronize if input_ids.is_cuda else (lambda: None)
    with longheads_attention(model, state):
        started = time.perf_counter()
        for start in range(0, input_ids.shape[1], chunk_size):
            chunk = input_ids[:, start : start + chunk_size]
            logits = model(input_ids=chunk, use_cache=False, logits_to_keep=1).logits[:, -1]
        sync()
        prefill_seconds = time.perf_counter() - started
        length_after_prefill = state.layers[0].length

        def next_logits(tokens: torch.Tensor) -> torch.Tensor:
            return model(input_ids=tokens[:, None], use_cache=False, logits_to_keep=1).logits[:, -1]

        sequences, decode_seconds = decode(
            next_logits, logits, input_ids, max_new_tokens, eos_token_id=eos_token_id
        )
    return LocretOutput(
        sequences=sequences,
        prompt_length=input_ids.shape[1],
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
        cache_length_after_prefill=length_after_prefill,
        cache_length_final=state.layers[0].length,
        peak_cache_bytes=state.peak_bytes,
    )
