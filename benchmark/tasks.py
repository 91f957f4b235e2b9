"""Task registry: one object per task name, each with its own ``load`` and ``score``.

Names:
- ``passkey``, ``number_string``, ``kv_retrieval``: generated locally (InfiniteBench
  formats) at ``length`` tokens; need ``tokenizer``, ``length`` and ``n``.
- ``ib_passkey``, ``ib_number_string``, ``ib_kv_retrieval`` and the other
  InfiniteBench names (``longbook_choice_eng`` ...): released data from ``data_dir``
  or the hub, middle-truncated to ``length`` tokens when given.
- ``leval_<task>``: L-Eval closed-ended tasks, head-truncated to ``length``.
- ``litm_kv`` (75 keys), ``litm_kv_140``, ``longchat_lines_200``, ``longchat_lines_600``:
  released retrieval cases from ``data_dir`` (never truncated: that could cut the needle).
- ``niah_text``, ``niah_text_multi``, ``niah_text_multi_all``, ``niah_text_paragraphs``: needles in
  Gutenberg prose (the last with every paragraph on one line), and
  ``multidoc_qa``: Natural Questions among distractor passages; built from ``data_dir`` at ``length``
  tokens on a ``split`` ("validation" by default, or "test"; ``benchmark.natural``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, cast

from benchmark.infinite_bench import generators
from benchmark.infinite_bench import scoring as ib_scoring
from benchmark.infinite_bench.loader import TASKS as IB_TASKS
from benchmark.infinite_bench.loader import load_infinite_bench
from benchmark.infinite_bench.templates import Style
from benchmark.leval import scoring as leval_scoring
from benchmark.leval.loader import TASKS as LEVAL_TASKS
from benchmark.leval.loader import load_leval
from benchmark.natural import scoring as natural_scoring
from benchmark.natural.multidoc import generate_multidoc_qa
from benchmark.natural.niah import Variant, generate_niah_text
from benchmark.natural.splits import SPLITS, Split, check_split
from benchmark.retrieval import scoring as retrieval_scoring
from benchmark.retrieval.loader import load_litm_kv, load_longchat_lines
from benchmark.sample import Sample
from benchmark.text import Counter, Tokenizer

Scorer = Callable[[str, list[str]], float]


@dataclass(frozen=True)
class Request:
    """What a caller asks of a loader; each task checks the parts it uses and rejects the rest."""

    name: str
    data_dir: str | None
    tokenizer: Tokenizer | Counter | None
    length: int | None
    depth: float | None
    n: int | None
    seed: int
    style: Style
    split: Split | None

    def text_tokenizer(self) -> Tokenizer | None:
        """The tokenizer when it can decode (needed to truncate), else None."""
        return cast(Tokenizer, self.tokenizer) if hasattr(self.tokenizer, "decode") else None

    def reject_depth(self) -> None:
        if self.depth is not None:
            raise ValueError(
                f"depth is only meaningful for generated, natural and litm_kv tasks, not {self.name!r}"
            )

    def needs_data_dir(self) -> str:
        if self.data_dir is None:
            raise ValueError(f"{self.name!r} has no hub copy: pass data_dir (e.g. ../shared/data)")
        return self.data_dir


@dataclass(frozen=True)
class Task:
    """A registered task: ``load`` builds its samples, ``score`` grades one reply in [0, 1]."""

    scorer: Scorer
    splits: ClassVar[tuple[str, ...]] = ()  # evaluation splits the task is built on (none: one set)

    def load(self, request: Request) -> list[Sample]:
        raise NotImplementedError

    def score(self, prediction: str, sample: Sample) -> float:
        return self.scorer(prediction, sample.answers)


@dataclass(frozen=True)
class GeneratedTask(Task):
    """InfiniteBench's synthetic tasks generated locally at any length and depth."""

    source: str

    def load(self, request: Request) -> list[Sample]:
        r = request
        if r.tokenizer is None or r.length is None or r.n is None:
            raise ValueError(f"generated task {r.name!r} needs tokenizer, length and n")
        return generators.generate(self.source, r.tokenizer, r.length, r.n, r.seed, r.depth, r.style)


def _truncating_tokenizer(request: Request) -> Tokenizer | None:
    tokenizer = request.text_tokenizer()
    if request.length is not None and tokenizer is None:
        raise ValueError("truncating to length needs a tokenizer with encode and decode")
    return tokenizer


@dataclass(frozen=True)
class InfiniteBenchTask(Task):
    """Released InfiniteBench data, middle-truncated to ``length``."""

    source: str

    def load(self, request: Request) -> list[Sample]:
        request.reject_depth()
        tokenizer = _truncating_tokenizer(request)
        return load_infinite_bench(
            self.source,
            request.data_dir,
            n=request.n,
            tokenizer=tokenizer,
            max_tokens=request.length,
            style=request.style,
        )


@dataclass(frozen=True)
class LEvalTask(Task):
    """L-Eval closed-ended tasks, head-truncated to ``length``."""

    source: str

    def load(self, request: Request) -> list[Sample]:
        request.reject_depth()
        tokenizer = _truncating_tokenizer(request)
        return load_leval(
            self.source, request.data_dir, n=request.n, tokenizer=tokenizer, max_tokens=request.length
        )


def _reject_length(request: Request) -> None:
    if request.length is not None:
        raise ValueError(f"{request.name!r} cannot be truncated to a length without risking the needle")


@dataclass(frozen=True)
class LitmKVTask(Task):
    """Lost-in-the-middle key-value records; ``depth`` chooses the asked key's position."""

    num_keys: int

    def load(self, request: Request) -> list[Sample]:
        _reject_length(request)
        data_dir = request.needs_data_dir()
        return load_litm_kv(data_dir, num_keys=self.num_keys, n=request.n, depth=request.depth)


@dataclass(frozen=True)
class LongChatLinesTask(Task):
    """LongChat line retrieval at its released lengths."""

    num_lines: int

    def load(self, request: Request) -> list[Sample]:
        request.reject_depth()
        _reject_length(request)
        return load_longchat_lines(request.needs_data_dir(), num_lines=self.num_lines, n=request.n)


def _natural_inputs(request: Request) -> tuple[str, Tokenizer | Counter, int, Split]:
    if request.tokenizer is None or request.length is None:
        raise ValueError(f"natural-text task {request.name!r} needs tokenizer and length")
    split = check_split(request.split or "validation")
    return request.needs_data_dir(), request.tokenizer, request.length, split


@dataclass(frozen=True)
class NiahTextTask(Task):
    """Needles in Gutenberg prose (``benchmark.natural.niah``)."""

    variant: Variant
    splits: ClassVar[tuple[str, ...]] = SPLITS

    def load(self, request: Request) -> list[Sample]:
        data_dir, tokenizer, length, split = _natural_inputs(request)
        if request.n is None:
            raise ValueError(f"{request.name!r} needs n")
        style = "chat" if request.style == "chat" else "completion"
        return generate_niah_text(
            self.variant, data_dir, split, tokenizer, length, request.n, request.seed, request.depth, style
        )


@dataclass(frozen=True)
class MultiDocQATask(Task):
    """Natural Questions among distractor passages (``benchmark.natural.multidoc``)."""

    splits: ClassVar[tuple[str, ...]] = SPLITS

    def load(self, request: Request) -> list[Sample]:
        data_dir, tokenizer, length, split = _natural_inputs(request)
        return generate_multidoc_qa(
            data_dir, split, tokenizer, length, request.n, request.seed, request.depth
        )


def _registry() -> dict[str, Task]:
    tasks: dict[str, Task] = {
        name: GeneratedTask(ib_scoring.SCORERS[name], name) for name in generators.GENERATORS
    }
    for name in IB_TASKS:
        registered = f"ib_{name}" if name in generators.GENERATORS else name
        tasks[registered] = InfiniteBenchTask(ib_scoring.SCORERS[name], name)
    for name in LEVAL_TASKS:
        tasks[f"leval_{name}"] = LEvalTask(leval_scoring.SCORERS[name], name)
    tasks["litm_kv"] = LitmKVTask(retrieval_scoring.score_litm_kv, 75)
    tasks["litm_kv_140"] = LitmKVTask(retrieval_scoring.score_litm_kv, 140)
    for lines in (200, 600):
        tasks[f"longchat_lines_{lines}"] = LongChatLinesTask(retrieval_scoring.score_longchat_lines, lines)
    tasks["niah_text"] = NiahTextTask(natural_scoring.score_needle, "single")
    tasks["niah_text_multi"] = NiahTextTask(natural_scoring.score_needle, "multi")
    tasks["niah_text_multi_all"] = NiahTextTask(natural_scoring.score_all_needles, "multi_all")
    tasks["niah_text_paragraphs"] = NiahTextTask(natural_scoring.score_needle, "paragraphs")
    tasks["multidoc_qa"] = MultiDocQATask(natural_scoring.best_subspan_em)
    return tasks


TASKS: dict[str, Task] = _registry()


def get_task(name: str) -> Task:
    """The task registered as ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def load_task(
    name: str,
    *,
    data_dir: str | None = None,
    tokenizer: Tokenizer | Counter | None = None,
    length: int | None = None,
    depth: float | None = None,
    n: int | None = None,
    seed: int = 0,
    style: Style = "chat",
    split: str | None = None,
) -> list[Sample]:
    """Samples of task ``name``.

    ``length`` is the prompt length in tokens: the exact target for generated and natural tasks, a
    truncation limit for released long documents. ``depth`` (0..1) places the needle in generated,
    natural and ``litm_kv*`` tasks; without it generated and niah_text depths sweep 0..1 (multidoc_qa:
    drawn from the seed). ``n`` caps the count (file tasks keep file order; ``seed`` drives generation).
    ``style`` picks the chat or completion templates. ``split`` ("validation" or "test") is only for tasks
    with splits (natural tasks; default "validation").
    """
    task = get_task(name)
    if split is not None and not task.splits:
        raise ValueError(
            f"{name!r} has no splits; split is only for: {', '.join(n for n, t in TASKS.items() if t.splits)}"
        )
    request = Request(
        name, data_dir, tokenizer, length, depth, n, seed, style, check_split(split) if split else None
    )
    samples = task.load(request)
    for sample in samples:
        sample.task = name
    return samples


def score(task_name: str, prediction: str, sample: Sample) -> float:
    """Score one reply in [0, 1] with the task's published metric."""
    return get_task(task_name).score(prediction, sample)
