"""niah_text: needle sentences in natural prose, at a requested prompt length (tokens) and depth.

The haystack is a contiguous stretch of the split's books (``books.split_text``: the books joined in a fixed
order) starting at a paragraph drawn from the seed; when it runs out it wraps around to the split's first
book, so prompts longer than the split (about 170K SmolLM2 tokens for validation, 220K for test) repeat
text. The haystack ends at a word boundary chosen so the whole prompt is within 1% of the requested length.
Each needle is inserted at the sentence boundary nearest its depth (a fraction of the haystack's
characters). Everything drawn for sample ``i`` (start paragraph, templates, values, the other needles'
depths) depends only on ``(split, seed, i)``, so the same needles appear at every length and depth.

Variants: ``single`` (one needle), ``multi`` (``NEEDLES_PER_PROMPT`` needles, the one at ``depth`` is
asked, the others sit at random depths), ``multi_all`` (the needles at random depths, all asked) and
``paragraphs`` (``single`` with the books' hard line wraps joined, so every paragraph is one line, as in web
text; the same needles, values and start paragraphs as ``single``). The Gutenberg books wrap every ~70
characters (a median line of 15 SmolLM2 tokens), which a scorer that works by lines may depend on.
"""

import bisect
import random
import re
from typing import Literal

from benchmark.infinite_bench.templates import Style
from benchmark.natural.books import split_text
from benchmark.natural.needles import TEMPLATES, NeedleTemplate, random_value
from benchmark.natural.splits import Split
from benchmark.sample import Sample
from benchmark.text import Counter, Tokenizer, make_counter
from locret.demo import check_length, fit_length

Variant = Literal["single", "multi", "multi_all", "paragraphs"]
NEEDLES_PER_PROMPT = 4
MAX_NEW_TOKENS = 16  # per asked needle
PREFIX = "Read the following text carefully. Questions about it follow the text.\n\n"
_CHARS_PER_TOKEN_BOUND = 8  # a haystack window this many characters per target token always suffices
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z])|\n\s*\n\s*")
_PARAGRAPH = re.compile(r"\n\s*\n")
_WRAP = re.compile(r"(?<=\S)[ \t]*\n[ \t]*(?=\S)")  # a line break inside a paragraph


def _question(needles: list[tuple[NeedleTemplate, str]], variant: Variant, style: Style) -> str:
    if variant != "multi_all":
        template = needles[0][0]
        if style == "chat":
            return f"\n\nQuestion: {template.question}\nAnswer briefly."
        return f"\n\nQuestion: {template.question}\nAnswer: {template.answer_prefix}"
    lines = "".join(f"{j}. {t.question}\n" for j, (t, _) in enumerate(needles, 1))
    ending = "" if style == "chat" else "Answers:\n1."
    return f"\n\nQuestions:\n{lines}Answer each question in order, one answer per line.\n{ending}"


def _absent(value: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE) is None


def _draw_needles(rng: random.Random, split: Split, k: int, text: str) -> list[tuple[NeedleTemplate, str]]:
    """``k`` distinct templates with distinct values that the haystack text never contains."""
    needles: list[tuple[NeedleTemplate, str]] = []
    for template in rng.sample(TEMPLATES[split], k):
        for _ in range(100):
            value = random_value(template.kind, rng)
            if _absent(value, text) and all(value != v for _, v in needles):
                break
        else:
            raise ValueError(f"no {template.kind} value absent from the {split} haystack in 100 draws")
        needles.append((template, value))
    return needles


def _window(text: str, start: int, n_chars: int) -> str:
    """``n_chars`` characters of ``text`` from ``start``, wrapping around to its beginning."""
    cycle = text[start:] + "\n\n" + text
    while len(cycle) < n_chars:
        cycle += "\n\n" + text
    return cycle[:n_chars]


def _insert(haystack: str, sentences: list[str], depths: list[float], boundaries: list[int]) -> str:
    """Each sentence at a distinct sentence boundary (those before the haystack's end) nearest its depth."""
    usable = boundaries[: bisect.bisect_left(boundaries, len(haystack))]
    chosen: list[int] = []
    for depth in depths:
        target = depth * len(haystack)
        free = [b for b in usable if b not in chosen]
        if not free:
            raise ValueError("the haystack has fewer sentence boundaries than needles")
        chosen.append(min(free, key=lambda b: abs(b - target)))
    for position, sentence in sorted(zip(chosen, sentences, strict=True), reverse=True):
        haystack = haystack[:position] + sentence + " " + haystack[position:]
    return haystack


def niah_sample(
    variant: Variant,
    data_dir: str,
    split: Split,
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float | None,
    seed: int,
    index: int,
    style: Style = "completion",
) -> Sample:
    """Sample ``index`` of a niah_text variant (see the module) at ``length`` tokens."""
    count = make_counter(tokenizer)
    text = split_text(data_dir, split)
    if variant == "paragraphs":
        text = _WRAP.sub(" ", text)
    rng = random.Random(f"niah_text:{split}:{seed}:{index}")
    starts = [0] + [m.end() for m in _PARAGRAPH.finditer(text)]
    start = rng.choice(starts)
    k = NEEDLES_PER_PROMPT if variant in ("multi", "multi_all") else 1
    needles = _draw_needles(rng, split, k, text)
    random_depths = [rng.random() for _ in range(k)]
    depths = random_depths if variant == "multi_all" else [depth, *random_depths[1:]]
    if variant == "multi_all":
        needles = [n for _, n in sorted(zip(depths, needles, strict=True), key=lambda pair: pair[0])]
        depths = sorted(depths)
    sentences = [template.sentence(value) for template, value in needles]
    question = _question(needles, variant, style)
    window = _window(text, start, _CHARS_PER_TOKEN_BOUND * length + 4096)
    word_ends = [m.end() for m in re.finditer(r"\S+", window)]
    boundaries = [0] + [m.end() for m in _SENTENCE_END.finditer(window)]
    task = "niah_text" if variant == "single" else f"niah_text_{variant}"
    answers = [value for _, value in needles] if variant == "multi_all" else [needles[0][1]]

    def build(n_words: int) -> Sample:
        haystack = window[: word_ends[min(n_words, len(word_ends)) - 1]]
        return Sample(
            id=f"{task}_{split}_{length}_{'sweep' if depth is None else f'{depth:.3f}'}_{seed}_{index}",
            context=_insert(haystack, sentences, depths, boundaries),
            question=question,
            answers=answers,
            task=task,
            max_new_tokens=MAX_NEW_TOKENS * len(answers),
            prefix=PREFIX,
        )

    sample_words = word_ends[min(2000, len(word_ends)) - 1]
    rate = count(window[:sample_words]) / min(2000, len(word_ends))
    overhead = count(PREFIX + " ".join(sentences) + question)
    n_words, n_tokens = fit_length(
        lambda k: count(build(k).prompt), length, round((length - overhead) / rate), rate
    )
    check_length(n_tokens, length)
    sample = build(n_words)
    spans = []
    for sentence in sentences:
        offset = len(sample.prefix) + sample.context.index(sentence)
        spans.append((offset, offset + len(sentence)))
    asked = sample.context.index(sentences[0])
    sample.meta.update(
        split=split,
        length=length,
        n_tokens=n_tokens,
        depth=depth,
        haystack_start=start,
        needles=[
            {"kind": t.kind, "statement": t.statement, "value": v, "depth": d}
            for (t, v), d in zip(needles, depths, strict=True)
        ],
        needle_char_spans=spans,
        needle_depth=count(sample.context[:asked]) / count(sample.context),
    )
    return sample


def generate_niah_text(
    variant: Variant,
    data_dir: str,
    split: Split,
    tokenizer: Tokenizer | Counter,
    length: int,
    n: int,
    seed: int,
    depth: float | None = None,
    style: Style = "completion",
) -> list[Sample]:
    """``n`` samples; without ``depth`` the asked needle's depth sweeps 0..1 evenly (not for multi_all,
    whose needles all sit at random depths)."""
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    if variant == "multi_all" and depth is not None:
        raise ValueError("niah_text_multi_all places its needles at random depths: pass no depth")
    samples = []
    for i in range(n):
        d = depth
        if depth is None and variant != "multi_all":
            d = i / (n - 1) if n > 1 else 0.5
        samples.append(niah_sample(variant, data_dir, split, tokenizer, length, d, seed, i, style))
    return samples
