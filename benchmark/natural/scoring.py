"""Scorers of the natural-text tasks.

``niah_text``: the needle's value, normalised (lowercase, punctuation dropped, whitespace collapsed), must
appear as whole words in the reply's first non-empty line (digit groups may be
written with separators) (a value mentioned only after a wrong first
answer does not count). ``niah_text_multi_all``: the fraction of the values found, as whole words, anywhere
in the reply. ``multidoc_qa``: "Lost in the Middle"'s ``best_subspan_em`` (any reference answer, normalised
as SQuAD does, is a substring of the normalised reply).
"""

import re
import string

_PUNCTUATION = set(string.punctuation)


def normalise(text: str) -> str:
    """Lowercase, digit-group separators dropped (4,821,937), other punctuation made spaces, whitespace
    collapsed."""
    text = re.sub(r"(?<=\d)[,.](?=\d{3}(?!\d))", "", text)
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text.lower())
    return " ".join(text.split())


def first_line(reply: str) -> str:
    """The reply's first non-empty line ("" when there is none)."""
    return next((line for line in reply.splitlines() if line.strip()), "")


def contains_value(text: str, value: str) -> bool:
    """Whether ``value`` appears as whole words in ``text``, both normalised."""
    return f" {normalise(value)} " in f" {normalise(text)} "


def score_needle(prediction: str, answers: list[str]) -> float:
    """niah_text, niah_text_multi: the asked value is in the reply's first line."""
    return float(contains_value(first_line(prediction), answers[0]))


def score_all_needles(prediction: str, answers: list[str]) -> float:
    """niah_text_multi_all: the fraction of the values anywhere in the reply."""
    return sum(contains_value(prediction, value) for value in answers) / len(answers)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation, as in lost-in-the-middle ``metrics.py``: lowercase, no punctuation, no
    articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def best_subspan_em(prediction: str, answers: list[str]) -> float:
    """multidoc_qa: 1 when any normalised reference answer is a substring of the normalised reply."""
    reply = normalize_answer(prediction)
    return float(any(normalize_answer(answer) in reply for answer in answers))
