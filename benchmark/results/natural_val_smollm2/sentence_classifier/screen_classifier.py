"""Screen a sentence classifier offline: a logistic regression over per-sentence features (surprisal
statistics, length, digits, capitals, quotes), fitted on Natural Questions *training* passages to tell the
sentences that hold a question's answer from the others (``record_nq_train.py``'s records), then used as the
eviction score on the ``niah_text`` *validation* records of ``../surprisal_rules/record_surprisal.py``:
how many needles the final cache would hold whole, against the shipped sentence mean. The same exact
top-k rebuild of the cache as ``../surprisal_rules/screen_rules.py`` (4 sinks, the newest 256 context
tokens, the top ``budget - 260`` scored tokens).

    PYTHONPATH=. python benchmark/results/natural_val_smollm2/sentence_classifier/screen_classifier.py \
        --train runs/sentence_classifier/nq_train \
        --validation runs/surprisal_rules/records_seed0 runs/surprisal_rules/records_seed1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmark.natural.scoring import normalize_answer
from locret.acquire import load_tokenizer
from locret.scorers.segments import N_SINKS
from locret.scorers.surprisal import sentence_end_tokens

RULES = Path(__file__).resolve().parent.parent / "surprisal_rules" / "screen_rules.py"
_spec = importlib.util.spec_from_file_location("screen_rules", RULES)
screen_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screen_rules)

FEATURES = (
    "mean surprisal",
    "mean without first token",
    "max",
    "std",
    "log length",
    "digit share",
    "capital share",
    "quote share",
    "mean - input mean so far",
)
QUOTES = "\"'“”‘’"


def token_tables(tokenizer) -> dict[str, np.ndarray]:
    """Per vocabulary id: holds a digit, starts (after spaces) with a capital letter, holds a quote."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return {
        "digit": np.array([any(c.isdigit() for c in t) for t in texts]),
        "capital": np.array([t.strip()[:1].isupper() for t in texts]),
        "quote": np.array([any(c in QUOTES for c in t) for t in texts]),
    }


def sentence_features(ids: np.ndarray, s: np.ndarray, spans, tables) -> np.ndarray:
    """``[len(spans), len(FEATURES)]``."""
    running = np.cumsum(s)
    rows = []
    for start, end in spans:
        values = s[start:end]
        mean = values.mean()
        rows.append(
            [
                mean,
                values[1:].mean() if len(values) > 1 else mean,
                values.max(),
                values.std(),
                np.log(len(values)),
                tables["digit"][ids[start:end]].mean(),
                tables["capital"][ids[start:end]].mean(),
                tables["quote"][ids[start:end]].mean(),
                mean - running[end - 1] / end,
            ]
        )
    return np.array(rows, dtype=np.float64)


def load(path: Path, end_table):
    """A record's entry, context ids, surprisal per token (the first 0) and the scorer's sentence spans."""
    entry = json.loads(path.read_text())
    context = entry["context_tokens"]
    ids = np.array(entry["ids"][:context])
    s = np.zeros(context)
    s[1:] = np.array(entry["surprisal"][: context - 1])
    return entry, ids, s, screen_rules.sentences(end_table[ids])


def nq_labels(entry, spans, tokenizer, ids) -> np.ndarray:
    """1 for a sentence that overlaps a passage and holds one of that passage's question's answers."""
    passages = [
        (p_start, p_end, [f" {n} " for n in map(normalize_answer, answers) if n])
        for p_start, p_end, answers in entry["passages"]
    ]
    labels = np.zeros(len(spans))
    for index, (start, end) in enumerate(spans):
        text = f" {normalize_answer(tokenizer.decode(ids[start:end]))} "
        for p_start, p_end, answers in passages:
            if start < p_end and end > p_start and any(answer in text for answer in answers):
                labels[index] = 1
    return labels


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3):
    """Class-balanced logistic regression on standardised features (LBFGS); returns (mean, std, weights)."""
    mean, std = x.mean(0), x.std(0) + 1e-8
    xs = torch.tensor((x - mean) / std)
    ys = torch.tensor(y)
    weight = torch.where(ys == 1, 0.5 / ys.mean(), 0.5 / (1 - ys.mean()))
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = xs @ w[:-1] + w[-1]
        loss = (
            weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, ys, reduction="none")
        ).mean()
        loss = loss + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean, std, w.detach().numpy()


def logits(x, model) -> np.ndarray:
    mean, std, w = model
    return ((x - mean) / std) @ w[:-1] + w[-1]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--validation", type=Path, nargs="+", required=True)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--stabilizers", type=int, default=256)
    parser.add_argument(
        "--held-out", type=int, default=20, help="NQ prompts kept out of the fit, for its AUC"
    )
    parser.add_argument(
        "--drop", nargs="*", default=[], choices=FEATURES, help="features left out of the fit"
    )
    args = parser.parse_args()
    used = [index for index, name in enumerate(FEATURES) if name not in args.drop]
    tokenizer = load_tokenizer(args.model)
    end_table = sentence_end_tokens(tokenizer, len(tokenizer)).numpy()
    tables = token_tables(tokenizer)

    train_x, train_y, held_x, held_y = [], [], [], []
    paths = sorted(args.train.glob("*.json"))
    for number, path in enumerate(paths):
        entry, ids, s, spans = load(path, end_table)
        held_out = number >= len(paths) - args.held_out
        (held_x if held_out else train_x).append(sentence_features(ids, s, spans, tables))
        (held_y if held_out else train_y).append(nq_labels(entry, spans, tokenizer, ids))
    x, y = np.concatenate(train_x), np.concatenate(train_y)
    hx, hy = np.concatenate(held_x), np.concatenate(held_y)
    log_length = FEATURES.index("log length")
    print(
        f"NQ training prompts: {len(paths) - args.held_out} fitted ({len(y)} sentences, {int(y.sum())} with an "
        f"answer), {args.held_out} held out ({len(hy)} sentences, {int(hy.sum())} with an answer)"
    )
    model = fit(x[:, used], y)
    print(
        "standardised weights: "
        + ", ".join(f"{n} {w:+.2f}" for n, w in zip([FEATURES[i] for i in used], model[2], strict=False))
    )
    print(
        f"held-out AUC: classifier {auc(logits(hx[:, used], model), hy):.3f}, mean surprisal {auc(hx[:, 0], hy):.3f}"
    )
    for index, name in enumerate(FEATURES):
        print(f"  held-out AUC of {name} alone: {auc(hx[:, index], hy):.3f}")

    def per_token(x):  # log-odds of an answer per token of the sentence: the cache pays per token
        return -np.logaddexp(0, -logits(x[:, used], model)) - x[:, log_length]

    rules = {
        "mean surprisal (shipped)": lambda x: x[:, 0],
        "classifier": lambda x: logits(x[:, used], model),
        "classifier, log p(answer) per token": per_token,
    }
    kept = defaultdict(lambda: defaultdict(int))
    quotes = defaultdict(int)  # kept sentences with a quote, over all prompts
    totals = defaultdict(int)
    needle_percentiles = []  # the needle's sentence's mean surprisal, as a percentile of its prompt's sentences
    for path in sorted(p for d in args.validation for p in d.glob("*.json")):
        entry, ids, s, spans = load(path, end_table)
        x = sentence_features(ids, s, spans, tables)
        ((needle_start, needle_end),) = entry["needle_token_spans"]
        length = round(len(entry["ids"]) / 1024)
        totals[length] += 1
        inside = [i for i, (start, end) in enumerate(spans) if start < needle_end and end > needle_start]
        needle_percentiles.append(float((x[:, 0] < x[inside, 0].max()).mean()))
        for name, rule in rules.items():
            scores = np.empty(len(ids))
            for (start, end), value in zip(spans, rule(x), strict=True):
                scores[start:end] = value
            scores[:N_SINKS] = np.inf
            held = screen_rules.kept(scores, len(ids), args.budget, args.stabilizers)
            kept[name][length] += int(held[needle_start:needle_end].all())
            older = len(ids) - args.stabilizers  # the scored part of the cache, the stabilizers aside
            quoted = [
                (start, end)
                for start, end in spans
                if N_SINKS <= start
                and end <= older
                and held[start:end].all()
                and tables["quote"][ids[start:end]].any()
            ]
            quotes[name] += len(quoted)
    lengths = sorted(totals)
    print(
        "niah_text validation: the needle's sentence's mean surprisal is above that of "
        f"{np.median(needle_percentiles):.1%} of its prompt's sentences (median over prompts; "
        f"AUC-like, to compare with the NQ answers' {auc(hx[:, 0], hy):.3f})"
    )
    print(
        "\nniah_text validation, needle kept whole (n per length: "
        + ", ".join(f"{k}K {totals[k]}" for k in lengths)
        + ")"
    )
    print(
        "| rule | "
        + " | ".join(f"{k}K" for k in lengths)
        + " | all | kept sentences with a quote, per prompt |"
    )
    print("|---|" + "---|" * (len(lengths) + 2))
    for name in rules:
        row = [kept[name][k] for k in lengths]
        mean_quotes = quotes[name] / sum(totals.values())
        print(f"| {name} | " + " | ".join(map(str, row)) + f" | {sum(row)} | {mean_quotes:.1f} |")


if __name__ == "__main__":
    main()
