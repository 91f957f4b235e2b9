"""How far a softmax over the vocabulary's first K ids (and the target) moves token and sentence surprisal
from the whole vocabulary's, on 4,096 tokens of validation haystack text (one full forward, no eviction).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/surprisal_defaults/softmax_agreement.py \
        [--data-dir ../shared/data]

Prints, per K: Spearman's rho of the token surprisals and of the sentence means, how many of the 20 most
surprising sentences stay in the top 20, and the mean amount by which the partial softmax lowers surprisal.
"""

import argparse

import torch

import locret
from benchmark.natural.books import split_text
from locret.acquire import load_tokenizer
from locret.scorers.surprisal import sentence_end_tokens, token_surprisal

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def ranks(values: torch.Tensor) -> torch.Tensor:
    return values.argsort().argsort().float()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = locret.from_pretrained(MODEL, dtype=torch.bfloat16)
    tokenizer = load_tokenizer(MODEL)
    ids = tokenizer(split_text(args.data_dir, "validation")[:60000], return_tensors="pt").input_ids[:, :4096]
    with torch.no_grad():
        states = model.model(ids).last_hidden_state[:, :-1]
        exact = token_surprisal(model, states, ids[:, 1:])[0]
        ends = sentence_end_tokens(tokenizer, model.config.vocab_size)[ids[0, 1:]]
        sentence = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1].long()]), 0)
        count = int(sentence.max()) + 1
        sizes = torch.zeros(count).index_add_(0, sentence, torch.ones_like(exact))

        def means(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(count).index_add_(0, sentence, values) / sizes

        exact_means = means(exact)
        top = set(exact_means.topk(20).indices.tolist())
        print(f"{MODEL} bf16, {ids.shape[1]} tokens of validation text, {count} sentences")
        print(
            "| K | token rho | sentence rho | top-20 sentences kept | mean lowering (nats) |\n|---|---|---|---|---|"
        )
        for k in (2048, 4096, 8192, 16384):
            partial = token_surprisal(model, states, ids[:, 1:], k)[0]
            partial_means = means(partial)
            kept = len(top & set(partial_means.topk(20).indices.tolist()))
            print(
                f"| {k} | {spearman(exact, partial):.3f} | {spearman(exact_means, partial_means):.3f} | {kept}/20 "
                f"| {(exact - partial).mean():.3f} |"
            )


if __name__ == "__main__":
    main()
