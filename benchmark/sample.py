"""One evaluation example, split so that eviction never sees the question.

Evaluation prefills ``prefix + context`` (evicting as it goes) and only then feeds
``question``: a retained needle must survive eviction decided before the question
was known, which is the setting Locret is designed for.
"""

from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable


@dataclass
class Sample:
    """A prompt in three parts plus its reference answers."""

    id: str
    context: str
    question: str
    answers: list[str]
    task: str
    max_new_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)
    prefix: str = ""

    @property
    def prompt(self) -> str:
        """The full prompt text, ``prefix + context + question``."""
        return self.prefix + self.context + self.question

    def closed_book(self) -> "Sample":
        """The same instruction and question with no context (and so no needle to locate in it)."""
        return replace(self, context="", meta={})


@runtime_checkable
class SampleSpecific(Protocol):
    """A method whose cache depends on the sample (the needle oracle): the runner binds it per sample."""

    def for_sample(self, sample: Sample) -> Any: ...
