"""Record sentence surprisal on training text with known facts: Natural Questions training passages (NQ
0-1999, ``locret.train.natural_data.nq_rows``) joined as ``Passage n: text`` blocks (the layout of
``locret.train.natural_data``'s training prompts; no question, as the scorer never sees one), prefilled
with ``SurprisalScorer`` at its defaults in Locret's evicting cache, as the benchmark runs it. Per prompt:
its ids, every context token's surprisal as the scorer computed it, and each passage's token span with its
question's answers, so that ``screen_classifier.py`` can label the sentences that hold an answer.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_classifier/record_nq_train.py \
        --out runs/sentence_classifier/nq_train --prompts 0:50
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from tqdm import tqdm

import locret.scorers.surprisal as surprisal_module
from benchmark.methods import get_method
from benchmark.natural.multidoc import NQ_FILE
from benchmark.text import resolve_file
from locret import LocretConfig
from locret.acquire import load_tokenizer, resolve_model
from locret.prefill import prefill_prompt
from locret.train.natural_data import nq_rows

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def training_passages(data_dir: str) -> list[tuple[str, list[str]]]:
    """``(gold passage, answers)`` of the NQ training questions (``locret.train.natural_data.nq_rows``)."""
    rows = nq_rows(resolve_file(Path(data_dir), NQ_FILE, "nq_open"))
    return [
        (
            next(c for c in row["ctxs"] if c["isgold"])["text"].strip(),
            [a for a in row["answers"] if a.strip()],
        )
        for row in rows
    ]


def build_prompt(passages, tokenizer, prompt_index: int, tokens: int):
    """A seeded draw of passages up to about ``tokens`` tokens: the ids and, per passage, its token span and
    answers (from the tokenizer's character offsets)."""
    rng = random.Random(f"sentence-classifier:{prompt_index}")
    text, spans, used = "", [], 0
    for n, index in enumerate(rng.sample(range(len(passages)), len(passages)), 1):
        passage, answers = passages[index]
        block = f"Passage {n}: {passage}"
        spans.append((len(text) + len(block) - len(passage), len(text) + len(block), answers))
        text += block + "\n\n"
        used += len(block) // 4  # about 4 characters per token: the draw stops near ``tokens``
        if used >= tokens:
            break
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    token_spans = []
    for char_start, char_end, answers in spans:
        inside = [i for i, (a, b) in enumerate(offsets) if a >= char_start and b <= char_end and b > a]
        token_spans.append((inside[0], inside[-1] + 1, answers))
    return ids, token_spans


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", default="0:50", help="START:STOP prompt indices (resumable)")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model(MODEL)
    tokenizer = load_tokenizer(model_dir)
    method = get_method("surprisal")
    model = method.prepare(model_dir, dtype=torch.bfloat16, device="cpu")
    passages = training_passages(args.data_dir)
    config = LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, n_local=1)
    calls: list[torch.Tensor] = []
    original = surprisal_module.token_surprisal

    def recording(*call_args, **kwargs):
        values = original(*call_args, **kwargs)
        calls.append(values[0].detach().float().cpu())
        return values

    surprisal_module.token_surprisal = recording
    start, stop = map(int, args.prompts.split(":"))
    for prompt_index in tqdm(range(start, stop), desc="prompts"):
        path = args.out / f"nq_train_{prompt_index:04d}.json"
        if path.exists():
            continue
        ids, token_spans = build_prompt(passages, tokenizer, prompt_index, args.tokens)
        calls.clear()
        prefill_prompt(model, torch.tensor([ids]), config, cache=method.make_cache(model, config))
        entry = {
            "ids": ids,
            "context_tokens": len(ids) - 1,  # the last token is the (un-evicted) tail
            "surprisal": torch.cat(calls).tolist(),
            "passages": token_spans,
        }
        path.write_text(json.dumps(entry))


if __name__ == "__main__":
    main()
