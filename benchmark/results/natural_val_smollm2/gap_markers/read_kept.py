"""Does the model read the kept text better when it is told where text was cut out? A text-level replay.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/gap_markers/read_kept.py --length 16384 \
        [--task niah_text_paragraphs] [--marker " [...] "]

For each validation prompt (depths 0/25/50/75/100%, five each; completion style, the question as the
un-evicted tail): Locret's run with the recommended ``LineScorer(max_line=32)`` (budget 1024, chunk 512, 256
stabilizers; its reply is the real one), then the same kept tokens read again as plain text with nothing
evicted (their keys and values recomputed from the kept text alone), once as they are and once with
``--marker``'s tokens wherever the kept text skips some of the input. Prints per prompt whether the cache
held the needle whole and which of the three replies found it, then the totals.
"""

from __future__ import annotations

import argparse

import torch

import locret
from benchmark.methods import get_method
from benchmark.results.natural_val_smollm2.window_line.needle_kept import DEPTHS, MODEL, validation_needles
from benchmark.run import encode_sample, eos_ids, needle_held
from benchmark.tasks import score
from locret.acquire import load_tokenizer


def reply(method, model, tokenizer, ids: list[int], config, max_new: int, eos):
    """``method``'s greedy reply to ``ids`` as ``benchmark.run`` makes it, and the cache it ended with."""
    out = method.generate(model, torch.tensor([ids]), config, max_new, eos_token_id=eos, track_positions=True)
    return tokenizer.decode(out.new_tokens[0].tolist(), skip_special_tokens=True), out.past_key_values


def with_markers(ids: list[int], kept: list[int], marker: list[int]) -> list[int]:
    """The kept tokens in order, ``marker`` before each one that does not follow its predecessor."""
    text = []
    for index, position in enumerate(kept):
        if index and position != kept[index - 1] + 1:
            text += marker
        text.append(ids[position])
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--task", default="niah_text_paragraphs")
    parser.add_argument("--marker", default=" [...]", help="the text put where kept text skips input")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    eos = eos_ids(tokenizer, model)
    marker = tokenizer.encode(args.marker, add_special_tokens=False)
    recommended, full = get_method("lines:max_line=32"), get_method("full")
    print(f"{args.task} validation, {args.length} tokens; marker {args.marker!r} = {marker}\n")
    print("| depth | prompt | needle held | Locret | kept text | kept text, marked | gaps |")
    print("|---|---|---|---|---|---|---|")
    found = {"Locret": [0, 0], "kept text": [0, 0], "kept text, marked": [0, 0]}  # [held, dropped]
    for depth in DEPTHS:
        for sample in validation_needles(tokenizer, args.length, depth, args.task):
            prompt, max_new = encode_sample(tokenizer, sample, False), sample.max_new_tokens
            context, question = prompt.ids[: -prompt.n_question], prompt.ids[-prompt.n_question :]
            config = recommended.locret_config(1024, 512, 256, prompt.n_question, len(prompt.ids))
            with torch.no_grad():
                answer, cache = reply(recommended, model, tokenizer, prompt.ids, config, max_new, eos)
            kept = sorted(p for p in cache.layers[0].positions[0, 0].tolist() if p < len(context))
            held = needle_held(cache, sample.meta["needle_token_spans"][:1]) == [1.0]
            replies = {"Locret": answer}
            with torch.no_grad():
                for name, mark in (("kept text", []), ("kept text, marked", marker)):
                    text = with_markers(context, kept, mark) + question
                    plain = full.locret_config(None, 512, 0, len(question), len(text))
                    replies[name] = reply(full, model, tokenizer, text, plain, max_new, eos)[0]
            scores = {name: score(args.task, text, sample) for name, text in replies.items()}
            for name, value in scores.items():
                found[name][0 if held else 1] += value
            gaps = sum(1 for a, b in zip(kept, kept[1:], strict=False) if b != a + 1)
            cells = " | ".join(f"{scores[name]:g}" for name in found)
            print(f"| {depth:g} | {sample.id} | {'yes' if held else 'no'} | {cells} | {gaps} |", flush=True)
    print()
    for name, (when_held, when_dropped) in found.items():
        print(
            f"{name}: found {when_held + when_dropped:g} (needle held: {when_held:g}, dropped: {when_dropped:g})"
        )


if __name__ == "__main__":
    main()
