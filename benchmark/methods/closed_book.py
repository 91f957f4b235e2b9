"""Closed book: the same prompt with its context removed, so the model answers from its own knowledge.

The floor every method's score stands on: on a task like ``multidoc_qa`` a model answers some questions
without any passage, and a cache that kept nothing useful still scores that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .full import FullCache


@dataclass
class ClosedBook(FullCache):
    name: ClassVar[str] = "closed_book"
    description: ClassVar[str] = "closed book: the prompt without its context (the model's own knowledge)"
    reads_context: ClassVar[bool] = False
