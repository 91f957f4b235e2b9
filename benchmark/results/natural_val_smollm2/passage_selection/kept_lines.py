"""Which lines the two whole-line implementations keep on the first three ``multidoc_qa`` validation prompts.

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/passage_selection/kept_lines.py > \
        benchmark/results/natural_val_smollm2/passage_selection/kept_lines_output.txt

For each prompt (4K, chat template; its context is all but the last 64 tokens): the lines (``benchmark.passages``,
at most 256 tokens) that ``kvzip:scores=heads:allocation=passage`` keeps, and those the ``lines`` scorer's
cache holds whole or in part after Locret's chunked prefill (budget 1024, chunk 512, 256 stabilizers).
"""

import torch

import locret
from benchmark.methods.kvzip import head_scores, token_scores
from benchmark.passages import passage_index, passage_keep
from benchmark.run import encode_sample
from benchmark.tasks import load_task
from locret.acquire import load_tokenizer
from locret.generation import new_cache
from locret.scorers import LineScorer
from locret.scorers.lines import line_end_tokens

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUESTION_TAIL = 64  # the un-evicted tail (the question), as the benchmark's n_local


def main() -> None:
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(MODEL)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    ends = line_end_tokens(tokenizer, model.config.vocab_size)
    config = locret.LocretConfig(budget=1024, chunk_size=512, n_stabilizers=256, n_local=QUESTION_TAIL)
    samples = load_task(
        "multidoc_qa", data_dir="../shared/data", tokenizer=tokenizer, length=4096, n=3, split="validation"
    )
    for sample in samples:
        ids = torch.tensor([encode_sample(tokenizer, sample, True).ids])
        context = ids[:, : ids.shape[1] - QUESTION_TAIL]
        lines = passage_index(context[0], ends, 256)
        gold = sample.meta["needle_token_spans"][0]
        with torch.no_grad():
            _, scores = head_scores(model, context, config.chunk_size, 15)
        masked = passage_keep(token_scores(scores)[0, 0], lines, config.budget, config.n_stabilizers)
        cache = new_cache(
            model,
            config,
            scorer=LineScorer(tokenizer=tokenizer, surprisal_weight=0, top_tokens=None),
            track_positions=True,
        )
        with torch.no_grad():
            locret.prefill_prompt(model, ids, config, cache=cache)
        kept = cache.layers[0].positions[0, 0]
        held = lines[kept[kept < context.shape[1]]]
        whole = [line for line in held.unique().tolist() if (held == line).sum() == (lines == line).sum()]
        print(
            f"{sample.id}: gold passage tokens {gold}, line {lines[gold[0]].item()} of {lines.max().item() + 1}"
        )
        print(f"  kvzip:scores=heads:allocation=passage keeps lines {sorted(set(lines[masked].tolist()))}")
        print(f"  lines scorer holds whole {whole}, in part {sorted(set(held.tolist()) - set(whole))}")


if __name__ == "__main__":
    main()
