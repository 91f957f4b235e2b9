"""The passkey prompt of ``python example.py``, part of the package so the demo needs nothing else.

A pass key (five random digits) is hidden in a long run of repeated filler lines, InfiniteBench's passkey
format (OpenBMB/InfiniteBench ``data/construct_synthetic_dataset.py``), completion style: the prompt ends
with "The pass key is", so a correct reply starts with the key. The amount of filler is searched so that
the prompt lands within 1% of the requested token count. ``benchmark`` builds its passkey and number-string
tasks from the same pieces.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
NOISE_WORDS = re.findall(r"\S+\s*", NOISE)
PASSKEY_NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key.\n"
PASSKEY_QUESTION = "What is the pass key?"
PASSKEY_COMPLETION_TEMPLATE = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz"
    " you about the important information.\n\n{context}\n\n{input}\n\nThe pass key is"
)
LENGTH_TOLERANCE = 0.01


def noise(n_words: int) -> str:
    """The first ``n_words`` words of the endlessly repeated noise line."""
    full, rest = divmod(n_words, len(NOISE_WORDS))
    return NOISE * full + "".join(NOISE_WORDS[:rest])


def haystack(needle: str, n_words: int, depth: float) -> str:
    """``n_words`` words of noise with the ``needle`` line at the line boundary nearest ``depth``."""
    per_line = len(NOISE_WORDS)
    lines_before = min(round(depth * n_words / per_line), n_words // per_line)
    return NOISE * lines_before + needle + noise(n_words - lines_before * per_line)


def passkey_key(rng: random.Random) -> str:
    """Five random digits, as published (a leading zero is kept)."""
    return "".join(str(rng.randint(0, 9)) for _ in range(5))


def fit_length(length_of: Callable[[int], int], target: int, start: int, rate: float) -> tuple[int, int]:
    """The filler size ``k`` whose prompt (``length_of(k)`` tokens) is closest to ``target``, and its length.

    Token counts are close to linear in ``k`` (``rate`` tokens per unit), so a few Newton steps converge; the
    search stops when a step would revisit a size.
    """
    seen: dict[int, int] = {}
    k = max(start, 1)
    while k not in seen and len(seen) < 16:
        seen[k] = n = length_of(k)
        if n == target:
            break
        step = round((target - n) / rate) or (1 if n < target else -1)
        k = max(1, k + step)
    best = min(seen, key=lambda size: abs(seen[size] - target))
    return best, seen[best]


def check_length(n_tokens: int, target: int) -> None:
    if abs(n_tokens - target) > LENGTH_TOLERANCE * target:
        raise ValueError(f"cannot build a {target}-token prompt within 1% (closest: {n_tokens})")


@dataclass(frozen=True)
class PasskeyPrompt:
    """A passkey prompt: its text, the key, and the needle's requested depth and token count."""

    prompt: str
    key: str
    depth: float
    n_tokens: int


def passkey_prompt(tokenizer, length: int, depth: float, rng: random.Random) -> PasskeyPrompt:
    """A ``length``-token passkey prompt (counted with ``tokenizer.encode``), the key at ``depth`` (0 = start)."""
    key = passkey_key(rng)
    needle = PASSKEY_NEEDLE.format(key=key)
    prefix, question = PASSKEY_COMPLETION_TEMPLATE.split("{context}")
    question = question.format(input=PASSKEY_QUESTION)

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    rate = count(NOISE * 40) / (40 * len(NOISE_WORDS))
    start = round((length - count(prefix + needle + question)) / rate)
    n_words, n_tokens = fit_length(
        lambda k: count(prefix + haystack(needle, k, depth) + question), length, start, rate
    )
    check_length(n_tokens, length)
    return PasskeyPrompt(prefix + haystack(needle, n_words, depth) + question, key, depth, n_tokens)


def first_integer(reply: str) -> str:
    """The first run of digits in a reply, or "" when there is none."""
    match = re.search(r"\d+", reply)
    return match.group(0) if match else ""


def is_correct(reply: str, key: str) -> bool:
    """InfiniteBench's passkey metric: the first integer of the reply is the key."""
    return first_integer(reply) == key
