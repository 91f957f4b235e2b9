"""Local generators for InfiniteBench's synthetic retrieval tasks at any length and depth.

Formats follow OpenBMB/InfiniteBench ``data/construct_synthetic_dataset.py``:
passkey and number_string hide one needle line in repeated noise lines; kv_retrieval
hides one pair in a JSON object of random UUID pairs. The published data fixes the
length (128K) and sweeps the depth; here both are parameters. The amount of filler
is searched so that the whole prompt lands within 1% of the requested token count.
"""

import random
import uuid
from collections.abc import Callable

from benchmark.infinite_bench.templates import MAX_NEW_TOKENS, Style, split_template
from benchmark.sample import Sample
from benchmark.text import Counter, Tokenizer, make_counter
from locret.demo import (  # the demo's passkey prompt, shared so the two cannot drift apart
    LENGTH_TOLERANCE,
    NOISE,
    NOISE_WORDS,
    PASSKEY_NEEDLE,
    PASSKEY_QUESTION,
    check_length,
    fit_length,
    haystack,
    passkey_key,
)

NUMBER_NEEDLE = "The sequence of digits is {key}. Remember it. {key} is the sequence of digits.\n"
NUMBER_QUESTION = "What is the sequence of digits?"
KV_QUESTION = '\nKey: "{key}"\nThe value associated with the specified key is: '


def number_string_key(rng: random.Random) -> str:
    """Ten digits: five random ones, then five duplications of a random earlier digit."""
    keys = [str(rng.randint(0, 9)) for _ in range(5)]
    for k in range(5):
        pos = rng.randint(0, 5 + k - 1)
        keys.insert(pos, keys[pos])
    return "".join(keys)


_HAYSTACK_TASKS: dict[str, tuple[str, str, Callable[[random.Random], str]]] = {
    "passkey": (PASSKEY_NEEDLE, PASSKEY_QUESTION, passkey_key),
    "number_string": (NUMBER_NEEDLE, NUMBER_QUESTION, number_string_key),
}


def _finish(sample: Sample, count: Counter, target: int, depth: float, needle: str) -> Sample:
    """Record where the needle ended up, in characters and tokens, in ``meta``."""
    offset = sample.context.index(needle)
    before = count(sample.context[:offset])
    sample.meta.update(
        length=target,
        n_tokens=count(sample.prompt),
        depth=depth,
        needle=needle,
        needle_char_offset=offset,
        needle_token_offset=count(sample.prefix + sample.context[:offset]),
        needle_depth=before / count(sample.context),
    )
    check_length(sample.meta["n_tokens"], target)
    return sample


def _haystack_sample(
    task: str,
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float,
    rng: random.Random,
    style: Style,
    sample_id: str,
) -> Sample:
    """Noise lines with the needle line at the line boundary nearest ``depth``."""
    needle_format, question, make_key = _HAYSTACK_TASKS[task]
    key = make_key(rng)
    count = make_counter(tokenizer)
    needle = needle_format.format(key=key)
    prefix, suffix = split_template(task, style, input=question)

    def build(n_words: int) -> Sample:
        return Sample(
            id=sample_id,
            context=haystack(needle, n_words, depth),
            question=suffix,
            answers=[key],
            task=task,
            max_new_tokens=MAX_NEW_TOKENS[task],
            prefix=prefix,
        )

    rate = count(NOISE * 40) / (40 * len(NOISE_WORDS))
    start = round((length - count(prefix + needle + suffix)) / rate)
    n_words, _ = fit_length(lambda k: count(build(k).prompt), length, start, rate)
    return _finish(build(n_words), count, length, depth, needle)


def generate_passkey(
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float,
    rng: random.Random,
    style: Style = "chat",
    sample_id: str = "passkey",
) -> Sample:
    """A passkey prompt of ``length`` tokens with the needle at ``depth`` (0 = start)."""
    return _haystack_sample("passkey", tokenizer, length, depth, rng, style, sample_id)


def generate_number_string(
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float,
    rng: random.Random,
    style: Style = "chat",
    sample_id: str = "number_string",
) -> Sample:
    """A number_string prompt of ``length`` tokens with the 10-digit needle at ``depth``."""
    return _haystack_sample("number_string", tokenizer, length, depth, rng, style, sample_id)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _kv_context(pairs: list[tuple[str, str]]) -> str:
    return "JSON data:\n{" + ", ".join(f'"{k}": "{v}"' for k, v in pairs) + "}"


def generate_kv_retrieval(
    tokenizer: Tokenizer | Counter,
    length: int,
    depth: float,
    rng: random.Random,
    style: Style = "chat",
    sample_id: str = "kv_retrieval",
) -> Sample:
    """A JSON object of random UUID pairs; the asked pair sits at index ``depth * (n - 1)``.

    One pair is ~50 tokens, too coarse for 1% at a few thousand tokens, so after
    choosing the number of pairs, filler pairs are redrawn until the count fits.
    """
    count = make_counter(tokenizer)
    needle_pair = (_uuid(rng), _uuid(rng))
    fillers = [(_uuid(rng), _uuid(rng)) for _ in range(20)]
    prefix, suffix = split_template("kv_retrieval", style, input=KV_QUESTION.format(key=needle_pair[0]))

    def build(n_pairs: int) -> Sample:
        while len(fillers) < n_pairs - 1:
            fillers.append((_uuid(rng), _uuid(rng)))
        pairs = fillers[: n_pairs - 1]
        pairs.insert(round(depth * (n_pairs - 1)), needle_pair)
        return Sample(
            id=sample_id,
            context=_kv_context(pairs),
            question=suffix,
            answers=[needle_pair[1]],
            task="kv_retrieval",
            max_new_tokens=MAX_NEW_TOKENS["kv_retrieval"],
            prefix=prefix,
        )

    rate = count(_kv_context(fillers)) / len(fillers)
    n_pairs, n_tokens = fit_length(lambda k: count(build(k).prompt), length, round(length / rate), rate)
    for _ in range(400):
        if abs(n_tokens - length) <= LENGTH_TOLERANCE * length / 2 or n_pairs < 2:
            break
        i = rng.randrange(n_pairs - 1)
        old = fillers[i]
        fillers[i] = (_uuid(rng), _uuid(rng))
        n = count(build(n_pairs).prompt)
        if abs(n - length) < abs(n_tokens - length):
            n_tokens = n
        else:
            fillers[i] = old
    needle = f'"{needle_pair[0]}": "{needle_pair[1]}"'
    return _finish(build(n_pairs), count, length, depth, needle)


GENERATORS = {
    "passkey": generate_passkey,
    "number_string": generate_number_string,
    "kv_retrieval": generate_kv_retrieval,
}


def generate(
    task: str,
    tokenizer: Tokenizer | Counter,
    length: int,
    n: int,
    seed: int,
    depth: float | None = None,
    style: Style = "chat",
) -> list[Sample]:
    """``n`` samples of a synthetic task; without ``depth``, depths sweep 0..1 evenly."""
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        d = depth if depth is not None else (i / (n - 1) if n > 1 else 0.5)
        sample_id = f"{task}_{length}_{d:.3f}_{seed}_{i}"
        samples.append(GENERATORS[task](tokenizer, length, d, rng, style, sample_id))
    return samples
