"""Read once, ask many times: a long input fed in pieces into one bounded Locret cache, any number of
questions answered from copies of it, and the cache saved to (and loaded from) one safetensors file.

Feeding is exactly Locret's chunked prefill of one long prompt: the session runs a chunk only once it is
sure that chunk would be a full chunk of *every* prompt "everything fed so far + a question", i.e. once at
least ``max(n_local, 1)`` tokens follow it. What is not yet run (fewer than ``chunk_size + max(n_local, 1)``
tokens) stays pending. ``ask(q)`` therefore returns exactly what ``locret.generate`` returns for the whole
input followed by ``q`` in one call, whatever pieces the input came in: the same settings and the same
scorer (by default those the model's heads recommend), including a scorer that rescores each chunk and
carries state from one chunk to the next (``LineScorer``), which a saved session keeps too.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .cache_io import cache_state, check_identity, decode_state, encode_state, model_identity, restore_cache
from .config import LocretConfig
from .generation import generate
from .models.base import LocretForCausalLMMixin
from .prefill import new_cache, prefill_chunk, resolve_config
from .scorers import EntryScorer, ScorerChoice

SESSION_FORMAT_VERSION = 2
READABLE_SESSION_FORMATS = (1, 2)  # 1: before scorers were recorded (the retaining heads' own scores)
METADATA_KEY = "locret_session"
QUESTION_FIELD = "{question}"


@dataclass
class Answer:
    """One answer: its generated ids and text, the seconds spent reading what was pending plus the question
    (with eviction, as in any prefill) and decoding."""

    token_ids: torch.Tensor
    text: str | None
    read_seconds: float
    decode_seconds: float


def chat_prompt_parts(tokenizer, system: str | None = None) -> tuple[str, str]:
    """``(prefix, question_template)`` from a tokenizer's chat template for one user turn holding the
    document, a blank line and the question, followed by the assistant's turn: feed ``prefix`` before the
    document and give ``question_template`` to the ``Session``."""
    marker = "\x00locret-document\x00"
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": f"{marker}\n\n{QUESTION_FIELD}"})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix, found, template = rendered.partition(marker)
    if not found or QUESTION_FIELD not in template:
        raise ValueError("the tokenizer's chat template does not keep the user message as given")
    return prefix, template


class Session:
    """A long input read once into a bounded Locret cache, then asked questions.

    ``feed(text_or_ids)`` appends to the input; ``ask(question, **generate_kwargs)`` answers from a copy of
    the cache (the session is unchanged); ``save(path)`` / ``Session.load(path, model)`` keep the cache in one
    safetensors file. Text needs ``tokenizer`` and is tokenized piece by piece without special tokens, so split
    it where the tokenizer splits anyway (a line break) and feed a BOS or chat header yourself if the model
    wants one (``chat_prompt_parts``); token ids are always exact. ``ask`` appends the question's tokens, a
    text question first formatted by ``question_template`` (its ``{question}`` replaced), after everything fed.
    One input per session (batch 1). ``config`` and ``scorer`` None take what the model's heads recommend
    (``locret.prefill.resolve_config``, ``recommended_scorer``), as ``locret.generate`` does; a scorer is
    saved by its registry name and settings (``ScorerChoice``), so only registered scorers can be saved.
    """

    def __init__(
        self,
        model,
        config: LocretConfig | None = None,
        *,
        tokenizer=None,
        question_template: str = QUESTION_FIELD,
        scorer: EntryScorer | None = None,
    ) -> None:
        if not isinstance(model, LocretForCausalLMMixin):
            raise ValueError(
                f"{type(model).__name__} has no retaining heads: load it with locret.from_pretrained(...)"
            )
        if QUESTION_FIELD not in question_template:
            raise ValueError(f"question_template must contain {QUESTION_FIELD}, got {question_template!r}")
        self.model = model
        self.config = resolve_config(model, config)
        self.tokenizer = tokenizer
        self.question_template = question_template
        self.cache = new_cache(model, self.config, scorer)
        self.cache.scorer.check_config(self.config)
        self.device = model.get_input_embeddings().weight.device
        self.pending = torch.empty(1, 0, dtype=torch.long, device=self.device)
        # The last tokens already in the cache: a rescoring scorer may read a few tokens before a chunk.
        self.recent = torch.empty(1, 0, dtype=torch.long, device=self.device)

    @property
    def tokens_read(self) -> int:
        """Tokens fed so far (in the cache or pending)."""
        return self.cache.get_seq_length() + self.pending.shape[1]

    def _ids(self, text_or_ids: str | Sequence[int] | torch.Tensor, what: str) -> torch.Tensor:
        """``[1, n]`` token ids on the model's device."""
        if isinstance(text_or_ids, str):
            if self.tokenizer is None:
                raise ValueError(f"{what} is text: create the Session with tokenizer=... or pass token ids")
            ids = torch.tensor(self.tokenizer.encode(text_or_ids, add_special_tokens=False), dtype=torch.long)
        elif isinstance(text_or_ids, torch.Tensor):
            ids = text_or_ids
        elif isinstance(text_or_ids, Sequence):
            ids = torch.tensor(list(text_or_ids), dtype=torch.long)
        else:
            raise ValueError(
                f"{what} must be text, a sequence of token ids or a tensor, got {type(text_or_ids)}"
            )
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"{what} must hold integer token ids, got {ids.dtype}")
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise ValueError(f"{what} must be one sequence ([n] or [1, n]), got shape {tuple(ids.shape)}")
        return ids.to(device=self.device, dtype=torch.long)[None]

    @torch.no_grad()
    def feed(self, text_or_ids: str | Sequence[int] | torch.Tensor, *, progress: bool = False) -> int:
        """Append to the input and prefill (with eviction) every chunk that is now certain; returns the
        number of tokens fed."""
        ids = self._ids(text_or_ids, "the input")
        self.pending = torch.cat([self.pending, ids], dim=1)
        chunk = self.config.chunk_size
        ready = max(self.pending.shape[1] - max(self.config.n_local, 1), 0) // chunk
        self.cache.prefilling = True
        try:
            for _ in tqdm(range(ready), desc="locret feed", unit="chunk", disable=not progress or ready < 2):
                known = torch.cat([self.recent, self.pending], dim=1)
                seen = self.cache.get_seq_length()
                prefill_chunk(self.model, self.cache, self._as_prompt(known), seen, seen + chunk)
                self.recent = known[:, : self.recent.shape[1] + chunk][:, -chunk:]
                self.pending = self.pending[:, chunk:]
        finally:
            self.cache.prefilling = False
        return ids.shape[1]

    def _as_prompt(self, known: torch.Tensor) -> torch.Tensor:
        """``known`` (the recent tokens and what follows) placed at its true offset in the whole input; the
        tokens before it are in the cache already and stand in as zeros (nothing reads them)."""
        before = self.cache.get_seq_length() - self.recent.shape[1]
        return torch.cat([known.new_zeros(1, before), known], dim=1)

    def ask(self, question: str | Sequence[int] | torch.Tensor, **generate_kwargs) -> Answer:
        """Answer with ``locret.generate`` (``generate_kwargs``: ``max_new_tokens``, ``eos_token_id``,
        sampling, ``streamer``) on everything fed plus the question, from a copy of the cache."""
        for name in ("config", "cache"):
            if name in generate_kwargs:
                raise ValueError(f"ask uses the session's {name}; do not pass {name}=")
        if isinstance(question, str):
            question = self.question_template.replace(QUESTION_FIELD, question)
        ids = self._ids(question, "the question")
        # generate reads a prompt from cache.get_seq_length() on (and a rescoring scorer a few tokens before)
        prompt = self._as_prompt(torch.cat([self.recent, self.pending, ids], dim=1))
        out = generate(self.model, prompt, self.config, cache=copy.deepcopy(self.cache), **generate_kwargs)
        tokens = out.new_tokens[0]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True) if self.tokenizer is not None else None
        return Answer(tokens, text, out.prefill_seconds, out.decode_seconds)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the cache, the pending tokens, the config and the model's identity to one safetensors file."""
        from . import __version__

        tensors, layers = cache_state(self.cache)
        tensors["pending"] = self.pending[0].contiguous().cpu()
        tensors["recent"] = self.recent[0].contiguous().cpu()
        metadata = {
            "format_version": SESSION_FORMAT_VERSION,
            "locret_version": __version__,
            "config": self.config.to_dict(),
            "scorer": ScorerChoice.of(self.cache.scorer).to_dict(),
            "scorer_state": encode_state(self.cache.scorer_state, tensors, "scorer_state."),
            "model": model_identity(self.model),
            "layers": layers,
            "question_template": self.question_template,
        }
        path = Path(path)
        save_file(tensors, path, metadata={METADATA_KEY: json.dumps(metadata)})
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, model, *, tokenizer=None, scorer: EntryScorer | None = None
    ) -> Session:
        """A session saved by ``save``, for the same model (architecture, shapes, dtype, weights and heads);
        any other model is refused with a ValueError naming what differs. The saved scorer is rebuilt from
        its name and settings; ``scorer`` gives it instead (e.g. with a ``tokenizer`` of its own), and must
        have the saved settings (else a ValueError)."""
        with safe_open(str(path), framework="pt") as file:
            raw = (file.metadata() or {}).get(METADATA_KEY)
            tensors = {key: file.get_tensor(key) for key in file.keys()}
        if raw is None:
            raise ValueError(f"{path} is not a locret session file (no {METADATA_KEY!r} metadata)")
        metadata = json.loads(raw)
        if metadata.get("format_version") not in READABLE_SESSION_FORMATS:
            raise ValueError(
                f"{path} has session format {metadata.get('format_version')!r}; this locret reads "
                f"{', '.join(map(str, READABLE_SESSION_FORMATS))}"
            )
        check_identity(metadata["model"], model, f"the session {path}")
        config = LocretConfig(**metadata["config"])
        choice = ScorerChoice.from_dict(metadata.get("scorer", {"name": "locret", "settings": {}}), path)
        if scorer is not None and ScorerChoice.of(scorer) != choice:
            raise ValueError(f"{path} was read with the scorer {choice}; the given scorer is {scorer}")
        session = cls(
            model,
            config,
            tokenizer=tokenizer,
            question_template=metadata["question_template"],
            scorer=scorer if scorer is not None else choice.build(),
        )
        devices = [next(layer.parameters()).device for layer in model.model.layers]
        session.cache = restore_cache(config, tensors, metadata["layers"], devices, session.cache.scorer)
        session.cache.scorer_state = decode_state(
            metadata.get("scorer_state", {"dict": []}), tensors, session.device
        )
        session.pending = tensors["pending"][None].to(session.device)
        if "recent" in tensors:
            session.recent = tensors["recent"][None].to(session.device)
        return session
