"""Causal importance score (CIS) labels: how strongly the answer will attend to each prompt token.

``S[l, j, k] = max over answer positions p and query heads h of KV group j of (q_{h,p} . k_{j,k}) / sqrt(D)``,
the pre-softmax scaled logit, with the model's own RoPE applied to every token (docs/design.md, section 2).

The labels are computed inside one ordinary forward over prompt + answer: a pre-hook on every attention
module takes that layer's input and its ``position_embeddings``, projects and rotates Q/K itself, and
reduces the answer-rows x prompt-columns block of logits right away, a block of answer rows at a time.
Only one layer's ``[H, block, n_prompt]`` slice of logits exists at any moment, so memory grows linearly
with the prompt (the reference held every layer's full attention matrix and ran out of memory).

Several answers to one prompt (e.g. SQuALITY's four references) are labelled in the same forward: they
follow the prompt side by side, each at positions ``n_prompt, n_prompt + 1, ...`` and attending to the
prompt and itself only (a 4D mask), so each answer row is computed exactly as in a forward of the prompt
and that answer alone, and the labels are the maximum over every answer's rows. (LongRoPE, Phi-3, picks
its factors once per forward, from the longest answer: they differ from a separate forward only when the
prompt plus a shorter answer stays within the original window and the longest does not.)

Two label kinds (``LABEL_KINDS``): ``logit`` is the CIS above; ``attention`` is KVzip's score (Kim et al.,
2025), ``log max over answer rows p and the group's query heads h of softmax_p(q_{h,p} . k / sqrt(D))[k]``:
the attention weight itself, normalised over everything row ``p`` sees (every prompt token and the answer's
tokens up to ``p``). A logit only says how well a key matches; the weight says whether this key wins over
all others the row could read, which is what the reader actually takes from it. When the answer repeats
the prompt (``data --format reconstruct``), every fact the prompt holds is read by some row, so these
labels need no question. They are stored as log-probabilities floored at ``ATTENTION_LOG_FLOOR`` so the
regression target stays on a bounded scale; the softmax denominator is a numerically stable logsumexp
built a block of answer rows at a time, so memory stays linear in the prompt here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from ..hooks import forward_hooks
from ..rope import apply_rope

DEFAULT_ANSWER_BLOCK = 128
LABEL_KINDS = ("logit", "attention")
ATTENTION_LOG_FLOOR = math.log(1e-8)


def _example_shape(query: torch.Tensor, key: torch.Tensor, n_prompt: int) -> tuple[int, int, int, int]:
    """``(num_heads, length, head_dim, num_kv)`` of one example's rotated query and key, checked."""
    if query.shape[0] != 1 or key.shape[0] != 1:
        raise ValueError(f"labels are computed one example at a time, got batch {query.shape[0]}")
    _, num_heads, length, head_dim = query.shape
    if n_prompt <= 0 or n_prompt >= length:
        raise ValueError(f"need a non-empty prompt and answer, got n_prompt={n_prompt} of {length} tokens")
    return num_heads, length, head_dim, key.shape[1]


def cis_from_rotated(
    query: torch.Tensor, key: torch.Tensor, n_prompt: int, answer_block: int = DEFAULT_ANSWER_BLOCK
) -> torch.Tensor:
    """Labels ``[Hkv, n_prompt]`` (float32) from rotated ``query [1, H, T, D]`` and ``key [1, Hkv, T, D]``.

    Rows ``n_prompt:`` of ``query`` are the answer, columns ``:n_prompt`` of ``key`` the prompt. The
    answer rows are reduced ``answer_block`` at a time so the working set is ``H * answer_block * n_prompt``.
    """
    num_heads, length, head_dim, num_kv = _example_shape(query, key, n_prompt)
    group = num_heads // num_kv
    answer = query[0, :, n_prompt:].float().reshape(num_kv, group, length - n_prompt, head_dim)
    prompt_keys = key[0, :, :n_prompt].float() * (1.0 / math.sqrt(head_dim))  # [Hkv, n_prompt, D]
    labels = torch.full((num_kv, n_prompt), -math.inf, dtype=torch.float32, device=query.device)
    for start in range(0, length - n_prompt, answer_block):
        rows = answer[:, :, start : start + answer_block].flatten(1, 2)  # [Hkv, G * block, D]
        block_max = torch.matmul(rows, prompt_keys.transpose(1, 2)).amax(dim=1)  # [Hkv, n_prompt]
        torch.maximum(labels, block_max, out=labels)
    return labels


def attention_from_rotated(
    query: torch.Tensor,
    key: torch.Tensor,
    n_prompt: int,
    answer_block: int = DEFAULT_ANSWER_BLOCK,
    answer_lengths: Sequence[int] | None = None,
) -> torch.Tensor:
    """KVzip labels ``[Hkv, n_prompt]`` (float32 log-probabilities, floored at ``ATTENTION_LOG_FLOOR``).

    Same inputs as ``cis_from_rotated``. Each answer row's softmax runs over the prompt and the answer's
    own tokens up to that row; with ``answer_lengths`` (answers side by side) a row sees only its own
    answer's tokens, as ``side_by_side_answers`` masks them. Working set: ``H * answer_block * length``.
    """
    num_heads, length, head_dim, num_kv = _example_shape(query, key, n_prompt)
    n_answer = length - n_prompt
    lengths = list(answer_lengths) if answer_lengths is not None else [n_answer]
    if sum(lengths) != n_answer:
        raise ValueError(f"answer_lengths {lengths} do not add up to the {n_answer} tokens after the prompt")
    group = num_heads // num_kv
    answer = query[0, :, n_prompt:].float().reshape(num_kv, group, n_answer, head_dim)
    keys = key[0].float() * (1.0 / math.sqrt(head_dim))  # [Hkv, T, D]
    prompt_keys, answer_keys = keys[:, :n_prompt], keys[:, n_prompt:]
    segment = torch.repeat_interleave(
        torch.arange(len(lengths), device=query.device), torch.tensor(lengths, device=query.device)
    )
    index = torch.arange(n_answer, device=query.device)
    labels = torch.full((num_kv, n_prompt), -math.inf, dtype=torch.float32, device=query.device)
    for start in range(0, n_answer, answer_block):
        rows_index = index[start : start + answer_block]
        rows = answer[:, :, rows_index].flatten(1, 2)  # [Hkv, G * block, D]
        prompt_logits = torch.matmul(rows, prompt_keys.transpose(1, 2))  # [Hkv, G * block, n_prompt]
        answer_logits = torch.matmul(rows, answer_keys.transpose(1, 2))  # [Hkv, G * block, n_answer]
        visible = (index[None, :] <= rows_index[:, None]) & (segment[None, :] == segment[rows_index][:, None])
        answer_logits = answer_logits.masked_fill(~visible.repeat(group, 1), -math.inf)
        normaliser = torch.logaddexp(
            prompt_logits.logsumexp(dim=-1, keepdim=True), answer_logits.logsumexp(dim=-1, keepdim=True)
        )
        torch.maximum(labels, (prompt_logits - normaliser).amax(dim=1), out=labels)
    return labels.clamp_min(ATTENTION_LOG_FLOOR)


class _LayerLabeller:
    """Forward pre-hook for one attention module: computes that layer's labels from its input, and keeps
    the prompt's head input ``[Q|K|V]`` when asked (``features``), so training need not rerun the backbone."""

    def __init__(
        self,
        target: torch.Tensor,
        layer: int,
        n_prompt: int,
        answer_block: int,
        features: torch.Tensor | None,
        label_kind: str = "logit",
        answer_lengths: Sequence[int] | None = None,
    ) -> None:
        self.target, self.layer, self.n_prompt, self.answer_block = target, layer, n_prompt, answer_block
        self.features, self.label_kind, self.answer_lengths = features, label_kind, answer_lengths

    def __call__(self, module, args, kwargs) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        cos, sin = kwargs["position_embeddings"]
        query, key, _, features = module.project_qkv(hidden_states)
        query = apply_rope(query, cos[:, None], sin[:, None])
        key = apply_rope(key, cos[:, None], sin[:, None])
        if self.label_kind == "attention":
            labels = attention_from_rotated(query, key, self.n_prompt, self.answer_block, self.answer_lengths)
        else:
            labels = cis_from_rotated(query, key, self.n_prompt, self.answer_block)
        self.target[self.layer] = labels
        if self.features is not None:
            self.features[self.layer] = features[0, : self.n_prompt]


@contextmanager
def _labelling_hooks(
    model,
    target: torch.Tensor,
    n_prompt: int,
    answer_block: int,
    features: torch.Tensor | None = None,
    label_kind: str = "logit",
    answer_lengths: Sequence[int] | None = None,
) -> Iterator[None]:
    hooks = [
        (
            layer.self_attn,
            _LayerLabeller(target, index, n_prompt, answer_block, features, label_kind, answer_lengths),
        )
        for index, layer in enumerate(model.model.layers)
    ]
    with forward_hooks(hooks, pre=True, with_kwargs=True):
        yield


@torch.no_grad()
def compute_cis_labels(
    model,
    input_ids: torch.Tensor,
    n_prompt: int,
    answer_block: int = DEFAULT_ANSWER_BLOCK,
    answer_lengths: Sequence[int] | None = None,
    label_kind: str = "logit",
) -> torch.Tensor:
    """Labels ``[num_layers, num_kv_heads, n_prompt]`` (float32) of ``label_kind`` for one example.

    ``model`` is a Locret causal LM (its attention modules provide ``project_qkv``); ``input_ids`` ``[T]`` or
    ``[1, T]`` is the prompt followed by the answer, or by several answers of ``answer_lengths`` tokens (the
    labels: the maximum over them). Only the decoder runs (``model.model``): no vocabulary logits are ever
    computed.
    """
    return compute_labels_and_features(
        model,
        input_ids,
        n_prompt,
        answer_block,
        features_dtype=None,
        answer_lengths=answer_lengths,
        label_kind=label_kind,
    )[0]


@torch.no_grad()
def compute_labels_and_features(
    model,
    input_ids: torch.Tensor,
    n_prompt: int,
    answer_block: int = DEFAULT_ANSWER_BLOCK,
    features_dtype: torch.dtype | None = torch.bfloat16,
    answer_lengths: Sequence[int] | None = None,
    label_kind: str = "logit",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels as ``compute_cis_labels``, plus the prompt's retaining-head inputs ``[L, n_prompt, F]``.

    The backbone is frozen, so these features are exactly what the heads see during training; saving them
    once makes a training step a heads-only forward/backward instead of a full backbone forward.
    """
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {label_kind!r}; choose one of {LABEL_KINDS}")
    input_ids = input_ids.reshape(1, -1).to(next(model.parameters()).device)
    config = model.config
    window = getattr(config, "sliding_window", None)
    if label_kind == "attention" and window is not None and input_ids.shape[1] > window:
        raise ValueError(
            f"attention labels assume full attention: {input_ids.shape[1]} tokens exceed the model's "
            f"sliding window of {window}"
        )
    num_kv = config.num_key_value_heads or config.num_attention_heads
    layers = config.num_hidden_layers
    target = torch.empty((layers, num_kv, n_prompt), dtype=torch.float32, device=input_ids.device)
    features = None
    if features_dtype is not None:
        features = torch.empty(
            (layers, n_prompt, model.head_shape.in_features), dtype=features_dtype, device=input_ids.device
        )
    if answer_lengths is not None and sum(answer_lengths) != input_ids.shape[1] - n_prompt:
        raise ValueError(
            f"answer_lengths {list(answer_lengths)} do not add up to the tokens after the prompt"
        )
    packing = {}
    if answer_lengths is not None and len(answer_lengths) > 1:
        if "flash" in str(config._attn_implementation):
            raise ValueError("several answers need a 4D attention mask: load the model with sdpa or eager")
        packing = side_by_side_answers(n_prompt, answer_lengths, model.dtype, input_ids.device)
    lengths = list(answer_lengths) if answer_lengths is not None else None
    with _labelling_hooks(model, target, n_prompt, answer_block, features, label_kind, lengths):
        model.model(input_ids=input_ids, use_cache=False, **packing)
    return target, features


def side_by_side_answers(
    n_prompt: int, answer_lengths: Sequence[int], dtype: torch.dtype, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """``position_ids`` and an additive 4D ``attention_mask`` for a prompt followed by several answers, each
    answer placed right after the prompt and seeing only the prompt and its own earlier tokens."""
    total = n_prompt + sum(answer_lengths)
    positions = torch.cat(
        [torch.arange(n_prompt)] + [torch.arange(n_prompt, n_prompt + n) for n in answer_lengths]
    )
    segment = torch.cat(
        [torch.zeros(n_prompt, dtype=torch.long)]
        + [torch.full((n,), i + 1, dtype=torch.long) for i, n in enumerate(answer_lengths)]
    )
    index = torch.arange(total)
    causal = index[None, :] <= index[:, None]
    same_or_prompt = (segment[None, :] == 0) | (segment[None, :] == segment[:, None])
    allowed = causal & same_or_prompt
    mask = torch.zeros((total, total), dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return {"position_ids": positions[None].to(device), "attention_mask": mask[None, None].to(device)}
