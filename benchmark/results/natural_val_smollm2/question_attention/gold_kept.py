"""How much of the gold passage each method's cache holds after the evicting prefill: per prompt, the share
of its tokens held, averaged over layers and KV heads (``multidoc_qa`` validation, 4K, chat template,
budget 1024, the benchmark's settings), and the mean over prompts.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/question_attention/gold_kept.py METHODS N
"""

import sys

import torch
from qa_variants import METHODS  # noqa: F401  (registers ``qvar``)

from benchmark.run import ModelPool, _make_method, encode_sample, load_samples, parse_args
from locret.acquire import load_tokenizer, resolve_model
from locret.prefill import prefill_prompt

BUDGET = 1024


def held_share(cache, start: int, end: int) -> float:
    """The share of the span's tokens each layer's KV heads hold, averaged."""
    held = [
        ((layer.positions[0] >= start) & (layer.positions[0] < end)).sum(-1).float() for layer in cache.layers
    ]
    return float(torch.stack(held).mean()) / (end - start)


def main(methods: str, n: int) -> None:
    settings = parse_args(
        f"--model HuggingFaceTB/SmolLM2-135M-Instruct --task multidoc_qa --split validation --length 4096 --n {n} "
        f"--budget {BUDGET} --dtype bfloat16 --threads 1 --data-dir ../shared/data --chat-template "
        f"--method {methods} --out unused".split()
    )
    torch.set_num_threads(1)
    model_dir = resolve_model(settings.model)
    tokenizer = load_tokenizer(model_dir)
    samples = load_samples(settings, tokenizer, "multidoc_qa", 4096, None, "validation")
    prompts = [encode_sample(tokenizer, sample, True) for sample in samples]
    pool = ModelPool(settings, model_dir)
    for name in settings.methods:
        method = _make_method(name, settings)
        model = pool.get(method)
        shares = []
        for sample, prompt in zip(samples, prompts, strict=True):
            ((start, end),) = sample.meta["needle_token_spans"]
            config = method.locret_config(
                BUDGET, settings.chunk_size, settings.stabilizers(BUDGET), prompt.n_question, len(prompt.ids)
            )
            cache = method.make_cache(model, config)
            for layer in cache.layers:
                layer.track_positions = True
            prefill_prompt(model, torch.tensor([prompt.ids]), config, cache=cache)
            shares.append(held_share(cache, start, end))
            print(
                f"{name}\t{sample.id}\tgold at {start / len(prompt.ids):.2f}\theld {shares[-1]:.2f}",
                flush=True,
            )
        print(f"{name}\tmean over {len(shares)}\t\theld {sum(shares) / len(shares):.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
