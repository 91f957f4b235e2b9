"""Static-shape decoding: the decode steps of ``locret.generate`` over preallocated, fixed-size buffers.

After the prefill Locret's cache is bounded: ``stored + max_new_tokens`` entries without ``decode_budget``,
``max(stored, decode_budget) + 1`` with it. ``StaticDecoder`` copies the ``LocretCache`` into buffers of that
capacity (rounded up to ``CAPACITY_BUCKET`` so one compiled step serves many prompts) and runs each step as one
function over the model's own modules (embedding, norms, ``project_qkv``, retaining head, ``o_proj``, MLP,
``lm_head`` on the one new position): new entries are written in place at their slot, attention runs over all
slots with a validity mask, and ``decode_budget`` eviction is ``torch_evict``'s ranking over the whole buffer
(invalid slots rank last, so the kept entries and their order are the eager path's). No shape depends on the
step, so the function can be ``torch.compile``d once per model and capacity (``compile=True``).

What each step does equals the eager path (``LocretAttentionMixin.forward`` with ``LocretLayer.update``,
``pool`` and ``evict``): the same pooled scores, the same evictions, and in ``"repacked"`` mode the same
positions (without ``decode_budget`` the stored entries never move, so keys are rotated once when written;
with it every step re-rotates all slots, as eviction repacks them). ``write_back`` stores the result in the
``LocretCache``, which then holds what the eager steps would have left there.

``unsupported_reason`` says why a model/cache is left to the eager path: batches other than 1 (a padded
batch's per-row pad masks and positions), scorers other than the retaining heads (the attention-based
baselines rescore stored entries after attention), families whose decoder layer is not the pre-norm residual
block (Gemma 3: sandwich norms, scaled embeddings), sliding windows shorter than the capacity, layers on
several devices, a model in training mode (dropout), a local tail still being protected, and a per-head
budget allocation with ``decode_budget`` (its eviction ranks each head apart). Without ``decode_budget`` a
per-head allocation's layers differ in length: each layer has its own slot and RoPE row, its pads masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast

from .cache import LocretCache
from .eviction import gather_entries, kept_indices
from .packed_linear import can_pack, packed_forwards, packed_linears
from .rope import RopeTable, apply_rope
from .scorers import RetainingHeadScorer

__all__ = [
    "GenerateSteps",
    "CAPACITY_BUCKET",
    "STATIC_FAMILIES",
    "StaticDecode",
    "StaticDecoder",
    "static_decoder_for",
    "unsupported_reason",
]

# ``generate(static_decode=...)``: None (static where supported, else eager), True (static, or a ValueError
# saying why not), False (eager), "compile" (static through ``torch.compile``).
StaticDecode = bool | Literal["compile"] | None

# Capacities are rounded up to a multiple of this, so prompts of similar length share one compiled step.
CAPACITY_BUCKET = 256
# Families whose decoder layer is ``h + attn(norm(h))`` then ``h + mlp(norm(h))`` and whose model is
# ``lm_head(norm(layers(embed(ids))))``: what ``decode_step`` computes.
STATIC_FAMILIES = frozenset({"llama", "qwen2", "qwen3", "mistral", "phi3"})


def capacity_for(cache: LocretCache, max_steps: int) -> int:
    """Slots a layer needs for ``max_steps`` decode steps, rounded up to ``CAPACITY_BUCKET``."""
    stored = max(layer.stored_length() for layer in cache.layers)
    budget = cache.config.decode_budget
    needed = stored + max_steps if budget is None else max(stored, budget) + 1
    return -(-needed // CAPACITY_BUCKET) * CAPACITY_BUCKET


def unsupported_reason(model, cache: LocretCache, max_steps: int) -> str | None:
    """Why static decoding cannot run this model and cache (None: it can); see the module docstring."""
    family = model.config.model_type.removeprefix("locret_")
    if family not in STATIC_FAMILIES:
        return f"static decoding supports {sorted(STATIC_FAMILIES)}, not {family!r}"
    if type(cache.scorer) is not RetainingHeadScorer:
        return f"static decoding scores with the retaining heads, not {type(cache.scorer).__name__}"
    first = cache.layers[0]
    if not first.is_initialized or first.stored_length() == 0:
        return "the cache is empty"
    if model.training:
        return "the model is in training mode (dropout)"
    if first.keys.shape[0] != 1:
        return "static decoding runs batch 1 (a batch decodes on the eager path)"
    if first.real_lengths is not None:
        return "a padded batch decodes on the eager path"
    if cache.config.budget_allocation != "uniform" and cache.config.decode_budget is not None:
        return (
            f"budget_allocation={cache.config.budget_allocation!r} with a decode_budget (per-head eviction) "
            "decodes on the eager path"
        )
    if any(layer.protect_remaining for layer in cache.layers):
        return "the local tail is still being protected"
    if any(layer.raw_tail.shape[-1] != cache.config.score_pooling // 2 for layer in cache.layers):
        return "fewer tokens were seen than the score pooling radius"
    devices = {param.device for param in model.parameters()}
    if len(devices) != 1:
        return "the model's parameters are on several devices"
    capacity = capacity_for(cache, max_steps)
    for layer in model.model.layers:
        window = layer.self_attn.attention_kwargs().get("sliding_window")
        if window is not None and window < capacity:
            return f"a sliding window ({window}) shorter than the decode capacity ({capacity})"
    return None


@dataclass(frozen=True)
class StepPlan:
    """What is fixed for a whole decode (python values a compiled step specialises on)."""

    capacity: int
    pool_radius: int
    score: bool  # False: the new entries are not scored (nothing evicts them and the cache is discarded)
    keep: int | None  # decode_budget (None: no eviction)
    one_over_budget: bool  # the buffer starts within ``keep``, so a step is at most one entry over it
    n_protect: int
    table_of_layer: tuple[int, ...]  # index into the distinct RoPE tables, per layer


@dataclass
class LayerBuffers:
    """One layer's fixed-size entries; slots at and past the valid count hold nothing that is attended, nor
    do a per-head allocation's left pads (``held``)."""

    keys: torch.Tensor  # [1, Hkv, C, D] before RoPE
    rotated: torch.Tensor | None  # [1, Hkv, C, D] rotated once (None: re-rotated every step)
    values: torch.Tensor  # [1, Hkv, C, D]
    scores: torch.Tensor  # [1, Hkv, C] float32
    raw_tail: torch.Tensor  # [1, Hkv, r] the last raw scores (pooling)
    positions: torch.Tensor | None  # [1, Hkv, C] original positions (tracked)
    held: torch.Tensor | None = None  # [1, Hkv, 1, C] False at each head's left pads (None: no pads)


def _into(size: int, stored: torch.Tensor) -> torch.Tensor:
    """A zero buffer of ``size`` slots along dim 2 holding ``stored`` in its first slots."""
    shape = list(stored.shape)
    shape[2] = size
    buffer = stored.new_zeros(shape)
    buffer[:, :, : stored.shape[2]] = stored
    return buffer


def _evict(plan: StepPlan, buffers: LayerBuffers, count: torch.Tensor) -> None:
    """``torch_evict`` over the whole buffer: the ``count`` valid entries are ranked as the eager path ranks
    them (NaN lowest, the newest ``n_protect`` raised to +inf), invalid slots after them all (-inf, later
    than any valid slot, so ``kept_indices``' older-first tie rule puts them last); the top ``keep`` move to the
    first slots."""
    slots = torch.arange(plan.capacity, device=count.device)
    ranked = torch.where(torch.isnan(buffers.scores), float("-inf"), buffers.scores)
    ranked = torch.where(slots >= count, float("-inf"), ranked)
    ranked = torch.where((slots >= count - plan.n_protect) & (slots < count), float("inf"), ranked)
    kept = kept_indices(ranked, plan.keep)
    for tensor in (buffers.keys, buffers.values, buffers.rotated, buffers.scores, buffers.positions):
        if tensor is not None:
            tensor[:, :, : plan.keep].copy_(gather_entries(tensor, kept))


def _evict_one(plan: StepPlan, buffers: LayerBuffers, count: torch.Tensor) -> None:
    """``_evict`` for a buffer never more than one entry over ``keep`` (a decode step appends one): with
    ``keep + 1`` valid entries the one ``torch_evict`` drops goes (the lowest-ranked, NaN lowest, the newest
    ``n_protect`` never; among equal ranks the newest) and the later slots move down one; otherwise nothing
    changes. One argmin and one gather per tensor instead of the full ranking."""
    capacity = plan.capacity
    slots = torch.arange(capacity, device=count.device)
    ranked = torch.where(torch.isnan(buffers.scores), float("-inf"), buffers.scores)
    ranked = torch.where(slots >= count - plan.n_protect, float("inf"), ranked)  # protected or unused
    newest_lowest = capacity - 1 - ranked.flip(-1).argmin(dim=-1, keepdim=True)  # [1, Hkv, 1]
    # nothing over the budget: "drop" the last slot, which is unused (count <= keep < capacity)
    dropped = torch.where(count > plan.keep, newest_lowest, capacity - 1)
    source = (slots + (slots >= dropped).long()).clamp(max=capacity - 1)  # [1, Hkv, C]
    for tensor in (buffers.keys, buffers.values, buffers.rotated, buffers.scores, buffers.positions):
        if tensor is not None:
            tensor.copy_(gather_entries(tensor, source))


def _pool_and_store(plan: StepPlan, buffers: LayerBuffers, raw: torch.Tensor, slot: torch.Tensor) -> None:
    """``LocretLayer.pool`` then the new score written at ``slot``: the newest ``r`` stored entries' scores
    are raised by their new neighbour, the new entry gets the maximum over its window."""
    radius = plan.pool_radius
    if radius == 0:
        buffers.scores.index_copy_(2, slot, raw)
        return
    joined = torch.cat([buffers.raw_tail, raw], dim=-1)
    heads = joined.shape[1]
    pooled = F.max_pool1d(joined.reshape(heads, 1, radius + 1), 2 * radius + 1, stride=1, padding=radius)
    pooled = pooled.view(1, heads, radius + 1)
    tail_slots = slot - radius + torch.arange(radius, device=slot.device)
    raised = torch.maximum(buffers.scores.index_select(2, tail_slots), pooled[..., :radius])
    buffers.scores.index_copy_(2, tail_slots, raised)
    buffers.raw_tail.copy_(joined[..., -radius:])
    buffers.scores.index_copy_(2, slot, pooled[..., radius:])


def _attend(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, scaling: float
) -> torch.Tensor:
    """One query per head ``[1, H, 1, D]`` over all slots ``[1, Hkv, C, D]`` (``valid`` ``[C]``, or
    ``[1, Hkv, 1, C]`` per KV head), as
    transformers' eager attention computes it (logits in the model's dtype, softmax in float32), with each KV
    head's query group as rows of one matmul instead of repeated keys. Returns ``[1, 1, H * D]``.

    Not ``scaled_dot_product_attention``: its CPU kernel takes about 1.4 ms per layer for one query over
    1,280 slots (SmolLM2, bf16), ten times this."""
    kv_heads, dim = keys.shape[1], keys.shape[-1]
    grouped = query.view(1, kv_heads, -1, dim)  # [1, Hkv, G, D]
    logits = torch.matmul(grouped, keys.transpose(-1, -2)) * scaling
    logits = logits.masked_fill(~valid, float("-inf"))
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(values.dtype)
    return torch.matmul(weights, values).reshape(1, 1, -1)


def decode_step(
    model,
    plan: StepPlan,
    token: torch.Tensor,
    slots: torch.Tensor,
    position: torch.Tensor,
    rows: list[tuple[torch.Tensor, torch.Tensor]],
    tables: list[tuple[torch.Tensor, torch.Tensor]],
    layers: list[LayerBuffers],
) -> torch.Tensor:
    """Logits ``[1, V]`` for ``token`` ``[1, 1]``, appended in each layer at its slot ``slots[layer]`` (its
    valid count before it; layers differ with a per-head allocation) with original position ``position``
    ``[1]``. ``rows[layer]`` is the layer's RoPE cos/sin ``[1, R]`` at the query's position, ``tables[t]``
    RoPE table ``t``'s first ``capacity`` rows (used when re-rotating every slot)."""
    hidden = model.model.embed_tokens(token)
    capacity = torch.arange(plan.capacity, device=slots.device)
    for index, layer in enumerate(model.model.layers):
        attention = layer.self_attn
        buffers = layers[index]
        slot = slots[index : index + 1]
        count = slot + 1
        valid = capacity < count
        if buffers.held is not None:
            valid = valid & buffers.held
        query, key, value, features = attention.project_qkv(layer.input_layernorm(hidden))
        cos, sin = rows[index]
        buffers.keys.index_copy_(2, slot, key)
        buffers.values.index_copy_(2, slot, value)
        if plan.score:
            raw = attention.retaining_head(features).transpose(1, 2).float()
            _pool_and_store(plan, buffers, raw, slot)
        if buffers.positions is not None:
            buffers.positions.index_copy_(2, slot, position.expand(*buffers.positions.shape[:2], 1))
        query = apply_rope(query, cos, sin)
        if buffers.rotated is not None:
            buffers.rotated.index_copy_(2, slot, apply_rope(key, cos, sin))
            keys = buffers.rotated
        else:
            all_cos, all_sin = tables[plan.table_of_layer[index]]
            keys = apply_rope(buffers.keys, all_cos, all_sin)
        output = _attend(query, keys, buffers.values, valid, attention.scaling)
        if plan.keep is not None:
            (_evict_one if plan.one_over_budget else _evict)(plan, buffers, count)
        hidden = hidden + attention.o_proj(output)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return model.lm_head(model.model.norm(hidden))[:, -1]


class StaticDecoder:
    """The decode steps after ``generate``'s prefill and tail forward, over fixed-size copies of ``cache``.

    ``step(tokens [1])`` returns the next logits ``[1, V]`` like the eager ``model(...)`` step;
    ``write_back()`` leaves in ``cache`` what the eager steps would have left. ``compile=True`` runs the step
    through ``torch.compile`` (``dynamic=False``; one compilation per model, capacity and settings; on CPU with
    inductor's ``freezing``, so weights are constants and must not change afterwards), and on
    CUDA also captures it as one CUDA graph (after warm-up steps whose effects are undone), replayed every
    step: the step reads its inputs from fixed tensors and changes only fixed buffers. ``score=False`` skips
    the retaining heads for the new entries, for a cache that is discarded after decoding without
    ``decode_budget`` (nothing reads their scores): ``write_back`` then leaves them NaN, the score of an
    entry nothing ranked.
    """

    def __init__(
        self, model, cache: LocretCache, max_steps: int, *, compile: bool = False, score: bool = True
    ) -> None:
        reason = unsupported_reason(model, cache, max_steps)
        if reason is not None:
            raise ValueError(f"static decoding cannot run here: {reason}")
        config = cache.config
        first = cache.layers[0]
        capacity = capacity_for(cache, max_steps)
        self.model, self.cache, self.max_steps = model, cache, max_steps
        self.counts = [layer.stored_length() for layer in cache.layers]  # per layer: per-head pads differ
        self.seen = first.seen
        self.steps = 0
        self.peaks = [layer.peak_length for layer in cache.layers]
        rerotate = config.position_mode == "repacked" and config.decode_budget is not None
        tables: list[RopeTable] = []
        for layer in model.model.layers:
            if layer.self_attn.locret_rope not in tables:
                tables.append(layer.self_attn.locret_rope)
        self.plan = StepPlan(
            capacity=capacity,
            pool_radius=config.score_pooling // 2,
            score=score or config.decode_budget is not None,
            keep=config.decode_budget,
            one_over_budget=config.decode_budget is not None and max(self.counts) <= config.decode_budget,
            n_protect=0 if config.decode_budget is None else min(config.n_stabilizers, config.decode_budget),
            table_of_layer=tuple(tables.index(layer.self_attn.locret_rope) for layer in model.model.layers),
        )
        self.absolute = config.position_mode == "absolute"
        dtype, device = first.keys.dtype, first.keys.device
        self.device = device
        self.rope_tables = tables
        self.tables = [table.table(capacity, dtype, device) for table in tables] if rerotate else []
        self.layers = [
            self._buffers(layer, attention_layer.self_attn, capacity, rerotate)
            for layer, attention_layer in zip(cache.layers, model.model.layers, strict=True)
        ]
        rotary = self.tables[0][0].shape[-1] if rerotate else tables[0].table(1, dtype, device)[0].shape[-1]
        # one RoPE row per table and query position offset (layers of one length share it): ``rows[layer]``
        row_keys = [
            (table, 0 if self.absolute else count - self.counts[0])
            for table, count in zip(self.plan.table_of_layer, self.counts, strict=True)
        ]
        self.shared_rows = {
            key: (first.keys.new_zeros(1, rotary), first.keys.new_zeros(1, rotary)) for key in row_keys
        }
        self.rows = [self.shared_rows[key] for key in row_keys]
        self.slots = torch.tensor(self.counts, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)
        self.step_fn = decode_step
        if compile:  # on CPU, inductor's freezing prepacks the weights as locret.packed_linear does
            options = {"freezing": True} if device.type == "cpu" else None
            self.step_fn = torch.compile(decode_step, dynamic=False, options=options)
        # uncompiled CPU steps read oneDNN-prepacked bf16 weights (locret.packed_linear)
        self.packed = (
            packed_linears(model) if not compile and device.type == "cpu" and can_pack(model) else []
        )
        self.use_graph = compile and device.type == "cuda"
        self.graph: tuple[torch.cuda.CUDAGraph, torch.Tensor] | None = None

    def _state(self) -> list[torch.Tensor]:
        """Every tensor a step changes."""
        fields = ("keys", "rotated", "values", "scores", "raw_tail", "positions")
        return [
            getattr(buffers, name)
            for buffers in self.layers
            for name in fields
            if getattr(buffers, name) is not None
        ]

    def _capture(self, arguments: tuple) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """One CUDA graph of the step; the warm-up steps (which compile) run on copies' behalf: the state is
        restored afterwards, so the first replay is the first real step."""
        saved = [tensor.clone() for tensor in self._state()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.step_fn(*arguments)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.step_fn(*arguments)
        for tensor, copy in zip(self._state(), saved, strict=True):
            tensor.copy_(copy)
        return graph, output

    def _buffers(self, layer, attention, capacity: int, rerotate: bool) -> LayerBuffers:
        keys = _into(capacity, layer.keys)
        rotated = None
        if not rerotate:
            stored = layer.stored_length()
            if self.absolute:
                cos, sin = attention.locret_rope.table(layer.seen, keys.dtype, keys.device)
                rotated = apply_rope(layer.keys, cos[layer.positions], sin[layer.positions])
            else:
                cos, sin = attention.locret_rope.table(stored, keys.dtype, keys.device)
                rotated = apply_rope(layer.keys, cos, sin)
            rotated = _into(capacity, rotated)
        return LayerBuffers(
            keys=keys,
            rotated=rotated,
            values=_into(capacity, layer.values),
            scores=_into(capacity, layer.scores),
            raw_tail=layer.raw_tail.clone(),
            positions=_into(capacity, layer.positions) if layer.track_positions else None,
            held=None
            if layer.head_pads is None
            else _into(capacity, layer.held_entries())[:, :, None]
            | (torch.arange(capacity, device=keys.device) >= layer.stored_length()),
        )

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next logits ``[1, V]`` after appending ``tokens`` ``[1]``."""
        if self.steps >= self.max_steps:
            raise ValueError(f"this StaticDecoder was sized for {self.max_steps} steps")
        self.token.copy_(tokens.view(1, 1))
        self.slots.copy_(torch.tensor(self.counts))
        self.position.fill_(self.seen)
        dtype = self.layers[0].keys.dtype
        for (table, offset), (cos_row, sin_row) in self.shared_rows.items():
            position = self.seen if self.absolute else self.counts[0] + offset
            cos, sin = self.rope_tables[table].table(position + 1, dtype, self.device)
            cos_row.copy_(cos[position : position + 1])
            sin_row.copy_(sin[position : position + 1])
        arguments = (
            self.model,
            self.plan,
            self.token,
            self.slots,
            self.position,
            self.rows,
            self.tables,
            self.layers,
        )
        if self.use_graph:
            if self.graph is None:
                self.graph = self._capture(arguments)
            self.graph[0].replay()
            logits = self.graph[1].clone()
        else:
            with packed_forwards(self.packed):
                logits = self.step_fn(*arguments)
        self.counts = [count + 1 for count in self.counts]
        self.peaks = [max(peak, count) for peak, count in zip(self.peaks, self.counts, strict=True)]
        if self.plan.keep is not None:
            self.counts = [min(count, self.plan.keep) for count in self.counts]
        self.seen += 1
        self.steps += 1
        return logits

    def write_back(self) -> None:
        """Store the buffers' valid entries in the ``LocretCache`` (pre-RoPE keys, as it keeps them)."""
        for layer, buffers, peak, count in zip(
            self.cache.layers, self.layers, self.peaks, self.counts, strict=True
        ):
            if not self.plan.score:
                buffers.scores[:, :, layer.stored_length() : count] = float("nan")
            layer.keys = buffers.keys[:, :, :count].clone()
            layer.values = buffers.values[:, :, :count].clone()
            layer.scores = buffers.scores[:, :, :count].clone()
            layer.raw_tail = buffers.raw_tail.clone()
            if buffers.positions is not None:
                layer.positions = buffers.positions[:, :, :count].clone()
            layer.seen = self.seen
            if self.steps:
                layer.peak_length = peak


def static_decoder_for(
    model, cache: LocretCache, max_steps: int, static_decode: StaticDecode, *, score: bool = True
) -> StaticDecoder | None:
    """The decoder ``generate`` uses for ``max_steps`` steps (None: the eager steps); see ``StaticDecode``.

    The default (None) runs the uncompiled static step wherever ``unsupported_reason`` allows: it is faster
    than the eager step on every measured setting (benchmark/README.md, "Decoding speed") and costs nothing
    to start, while ``torch.compile`` took 106 s for SmolLM2 on a 2-core CPU and ran no faster there, so it
    is asked for."""
    if static_decode not in (None, True, False, "compile"):
        raise ValueError(f"static_decode must be None, True, False or 'compile', got {static_decode!r}")
    if static_decode is False or max_steps < 1:
        return None
    reason = unsupported_reason(model, cache, max_steps)
    if reason is not None:
        if static_decode is None:
            return None
        raise ValueError(f"static_decode={static_decode!r} cannot run here: {reason}")
    return StaticDecoder(model, cache, max_steps, compile=static_decode == "compile", score=score)


class GenerateSteps:
    """The static steps inside transformers' ``generate`` (``model.generate`` of a Locret model).

    Built lazily at the first one-token forward once the local tail is in the cache, then used for every
    forward that is one plain token of a batch-1 sequence. Anything else (a longer input, attentions or
    hidden states asked for, more steps than ``max_steps``) first writes the buffers back into the cache and
    leaves that forward and all later ones to the model's own forward, so the cache is always coherent.
    ``finish()`` (called when ``generate`` returns) writes back whatever ran.
    """

    def __init__(self, model, cache: LocretCache, max_steps: int, static_decode: StaticDecode) -> None:
        self.model, self.cache, self.max_steps, self.static_decode = model, cache, max_steps, static_decode
        self.decoder: StaticDecoder | None = None
        self.done = static_decode is False

    def forward(self, input_ids: torch.Tensor | None, kwargs: dict) -> CausalLMOutputWithPast | None:
        """The step's output, or None where the model's own forward must run."""
        if self.done:
            return None
        plain = (
            input_ids is not None
            and tuple(input_ids.shape) == (1, 1)
            and kwargs.get("inputs_embeds") is None
            and not kwargs.get("output_attentions")
            and not kwargs.get("output_hidden_states")
        )
        if self.decoder is None:
            if not plain or any(layer.protect_remaining for layer in self.cache.layers):
                return None  # the prompt's tail: the model's own forward
            self.decoder = static_decoder_for(self.model, self.cache, self.max_steps, self.static_decode)
            if self.decoder is None:
                self.done = True
                return None
        if not plain or self.decoder.steps >= self.decoder.max_steps:
            self.finish()
            return None
        logits = self.decoder.step(input_ids[:, 0])
        return CausalLMOutputWithPast(logits=logits[:, None], past_key_values=self.cache)

    def finish(self) -> None:
        if self.decoder is not None and not self.done:
            self.decoder.write_back()
        self.done = True
