"""The needle and passage oracles: their scorers, the token spans, retention through eviction, the passage
oracle's knapsack, and the runner plumbing."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from tiny import tiny_locret
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from benchmark import run as bench_run
from benchmark import summary
from benchmark.methods import get_method
from benchmark.methods.passage_oracle import passages_to_keep
from benchmark.natural.multidoc import gold_position_weights
from benchmark.oracle import NeedleOracleScorer, most_likely_passages, token_spans
from benchmark.sample import Sample
from benchmark.tasks import load_task
from locret.config import LocretConfig
from locret.generation import new_cache, prefill_prompt
from locret.scorers import StreamingLLMScorer


class SlowWhitespaceTokenizer:
    """One token per word, without offsets, taking ``add_special_tokens`` as HF's slow tokenizers do."""

    def __init__(self) -> None:
        self.words: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = []
        for word in text.split():
            if word not in self.words:
                self.words.append(word)
            ids.append(self.words.index(word))
        return ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


def test_scorer_marks_needle_positions_infinite() -> None:
    scorer = NeedleOracleScorer(spans=((5, 8), (20, 21)))
    key = torch.zeros(1, 2, 25, 4)
    scores = scorer.score_new(None, None, None, key, torch.arange(25))
    assert scores.shape == (1, 2, 25)
    infinite = torch.isinf(scores[0, 0]).nonzero().flatten().tolist()
    assert infinite == [0, 1, 2, 3, 5, 6, 7, 20]  # 4 sinks and the needles
    assert scores[0, 1, 10] == 10.0  # otherwise recency


def test_token_spans_fast_and_counting(smollm2_tokenizer) -> None:
    text = "Some prose here. The code word for the north gate was amber kettle. More prose follows."
    sentence = "The code word for the north gate was amber kettle."
    start = text.index(sentence)
    ids = smollm2_tokenizer.encode(text)
    ((a, b),) = token_spans(smollm2_tokenizer, text, ids, [(start, start + len(sentence))], True)
    assert smollm2_tokenizer.decode(ids[a:b]).strip() == sentence
    slow = SlowWhitespaceTokenizer()  # no offsets: spans come from counting the text's tokens up to each end
    ws_ids = slow.encode(text)
    ((a, b),) = token_spans(slow, text, ws_ids, [(start, start + len(sentence))], True)
    assert slow.decode(ws_ids[a:b]) == sentence
    with pytest.raises(ValueError, match="does not tokenize"):
        token_spans(smollm2_tokenizer, text, ids[:-1], [(0, 4)], True)


@pytest.mark.parametrize("scorer_kind", ["oracle", "streaming_llm"])
def test_oracle_keeps_the_needle_through_eviction(scorer_kind: str) -> None:
    model = tiny_locret()
    needle = (40, 52)
    config = LocretConfig(budget=32, chunk_size=16, n_stabilizers=4, n_local=8)
    scorer = NeedleOracleScorer(spans=(needle,)) if scorer_kind == "oracle" else StreamingLLMScorer()
    cache = new_cache(model, config, scorer=scorer, track_positions=True)
    torch.manual_seed(1)
    prefill_prompt(model, torch.randint(3, 97, (1, 200)), config, cache=cache)
    wanted = torch.arange(*needle)
    for layer in cache.layers:
        assert layer.positions.shape[-1] <= config.budget
        kept = [
            bool(torch.isin(wanted, layer.positions[0, h]).all()) for h in range(layer.positions.shape[1])
        ]
        assert all(kept) if scorer_kind == "oracle" else not any(kept)


def test_oracle_method_needs_sample_spans() -> None:
    method = get_method("needle_oracle")
    plain = Sample(id="x", context="c", question="q", answers=["a"], task="passkey", max_new_tokens=1)
    with pytest.raises(ValueError, match="records none"):
        method.for_sample(plain)
    with pytest.raises(ValueError, match="for_sample"):
        method.make_cache(tiny_locret(), LocretConfig(budget=32, chunk_size=16, n_stabilizers=4, n_local=8))
    plain.meta["needle_token_spans"] = [[3, 9]]
    assert method.for_sample(plain).needle_spans == ((3, 9),)
    assert "needle_spans" not in method.params()


def _prose_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\s\w]", t)})
    vocab = {token: i for i, token in enumerate(["<unk>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def _saved_prose_model(task: str, shared_data: Path, tmp_path: Path, ws_tokenizer, length: int, window: int):
    """A tiny Llama and a word-level tokenizer of one ``task`` prompt of ``length`` words, saved in
    ``tmp_path / "model"`` for ``benchmark.run``; returns the tokenizer."""
    probe = load_task(
        task, data_dir=str(shared_data), tokenizer=ws_tokenizer, length=length, n=1, split="test"
    )
    tokenizer = _prose_tokenizer([probe[0].prompt])
    model = tiny_locret(vocab_size=len(tokenizer), max_position_embeddings=window)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tokenizer


def _run_benchmark(argv: list[str]) -> list[dict]:
    """``benchmark.run.main(argv)``, with torch's thread count restored after it."""
    threads = torch.get_num_threads()
    try:
        return bench_run.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_runner_binds_the_oracle_per_sample(shared_data: Path, tmp_path: Path, ws_tokenizer) -> None:
    tokenizer = _saved_prose_model("niah_text", shared_data, tmp_path, ws_tokenizer, length=300, window=1024)
    argv = [
        "--model", str(tmp_path / "model"), "--task", "niah_text", "--split", "test",
        "--method", "needle_oracle,streaming_llm", "--budget", "64", "--length", "400", "--depth", "0.5",
        "--n", "1", "--chunk-size", "32", "--dtype", "float32", "--threads", "1", "--max-new-tokens", "2",
        "--data-dir", str(shared_data), "--out", str(tmp_path / "runs"),
    ]  # fmt: skip
    results = _run_benchmark(argv)
    assert {r["task"] for r in results} == {"niah_text-test"} and all(r["split"] == "test" for r in results)
    folder = tmp_path / "runs" / "niah_text-test" / "needle_oracle" / "b64_L400_d0.5"
    (record,) = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    ((start, end),) = record["needle_token_spans"]
    (sample,) = load_task("niah_text", data_dir=str(shared_data), tokenizer=tokenizer, length=400, n=1,
                          depth=0.5, split="test", style="completion")  # fmt: skip
    ids = tokenizer.encode(sample.prefix + sample.context)
    assert tokenizer.decode(ids[start:end]) == tokenizer.decode(
        tokenizer.encode(sample.meta["needles"][0]["statement"].format(value=sample.answers[0]))
    )
    assert (
        record["status"] == "ok"
        and "needle_spans" not in json.loads((folder / "config.json").read_text())["method"]
    )
    # every run records which needles the cache held: the oracle all of it, StreamingLLM none (a mid-prompt
    # needle, 64 of 400 entries kept)
    streaming = tmp_path / "runs" / "niah_text-test" / "streaming_llm" / "b64_L400_d0.5"
    (dropped,) = [json.loads(line) for line in (streaming / "predictions.jsonl").read_text().splitlines()]
    assert record["needle_held"] == [1.0] and dropped["needle_held"] == [0.0]
    metrics = {path: json.loads((path / "metrics.json").read_text()) for path in (folder, streaming)}
    assert [
        (metrics[path]["n_needle_held"], metrics[path]["n_needle_recorded"]) for path in (folder, streaming)
    ] == [
        (1, 1),
        (0, 1),
    ]
    assert summary.held_text(metrics[folder]) == f"1/1 ({record['score']:g})"


def _best_by_brute_force(costs: list[int], weights: list[float], room: int) -> float:
    best = 0.0
    for mask in range(1 << len(costs)):
        chosen = [i for i in range(len(costs)) if mask >> i & 1]
        if sum(costs[i] for i in chosen) <= room:
            best = max(best, sum(weights[i] for i in chosen))
    return best


def test_most_likely_passages_is_the_exact_optimum() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 10)
        costs = [rng.choice([0, rng.randint(1, 40)]) for _ in range(n)]
        weights = gold_position_weights(n)
        room = rng.randint(0, 120)
        chosen = most_likely_passages(costs, weights, room)
        assert chosen == sorted(set(chosen)) and sum(costs[i] for i in chosen) <= room
        assert sum(weights[i] for i in chosen) == pytest.approx(_best_by_brute_force(costs, weights, room))
    with pytest.raises(ValueError, match="two ends"):
        most_likely_passages([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], 5)


def test_passages_to_keep_counts_only_what_the_window_does_not_hold() -> None:
    # budget 20 = 4 sinks + 6 stabilizers + room 10; the context ends at 40, the window starts at 34
    documents = ((4, 10), (10, 14), (14, 30), (30, 37), (37, 40))
    kept = passages_to_keep(documents, budget=20, n_stabilizers=6)
    # the cheap inner ones first: (10, 14) costs 4, (30, 37) 4 (its part before the window), (37, 40) is free
    assert kept == ((10, 14), (30, 37), (37, 40))
    assert passages_to_keep(documents, budget=30, n_stabilizers=6) == ((4, 10), (10, 14), (30, 37), (37, 40))


def test_passage_oracle_keeps_whole_passages_through_eviction() -> None:
    method = get_method("passage_oracle")
    plain = Sample(id="x", context="c", question="q", answers=["a"], task="passkey", max_new_tokens=1)
    with pytest.raises(ValueError, match="records none"):
        method.for_sample(plain)
    config = LocretConfig(budget=48, chunk_size=16, n_stabilizers=8, n_local=8)
    with pytest.raises(ValueError, match="for_sample"):
        method.make_cache(tiny_locret(), config)
    documents = [[4, 40], [40, 52], [52, 100], [100, 110], [110, 176], [176, 192]]  # the context: 192 tokens
    plain.meta["document_token_spans"] = documents
    bound = method.for_sample(plain)
    assert "document_spans" not in bound.params()
    model = tiny_locret()
    cache = bound.make_cache(model, config, track_positions=True)
    torch.manual_seed(1)
    prefill_prompt(model, torch.randint(3, 97, (1, 200)), config, cache=cache)
    kept = passages_to_keep(tuple(map(tuple, documents)), config.budget, config.n_stabilizers)
    assert kept == ((40, 52), (100, 110), (176, 192))  # 12 + 10 + 8 older than the window, in a room of 36
    held = torch.cat([torch.arange(s, e) for s, e in kept])
    for layer in cache.layers:
        for h in range(layer.positions.shape[1]):
            assert torch.isin(held, layer.positions[0, h]).all()
            assert not torch.isin(torch.arange(52, 100), layer.positions[0, h]).any()


def test_runner_binds_the_passage_oracle_to_each_prompts_documents(
    shared_data: Path, tmp_path: Path, ws_tokenizer
) -> None:
    depths = (0.25, 0.5, 0.75)
    tokenizer = _saved_prose_model(
        "multidoc_qa", shared_data, tmp_path, ws_tokenizer, length=900, window=2048
    )
    argv = [
        "--model", str(tmp_path / "model"), "--task", "multidoc_qa", "--split", "test", "--method", "passage_oracle",
        "--budget", "320", "--length", "1200", "--n", "1", "--depth", ",".join(map(str, depths)),
        "--chunk-size", "64", "--dtype", "float32", "--threads", "1", "--max-new-tokens", "2",
        "--data-dir", str(shared_data), "--out", str(tmp_path / "runs"),
    ]  # fmt: skip
    _run_benchmark(argv)
    held_gold = []
    for depth in depths:
        folder = tmp_path / "runs" / "multidoc_qa-test" / "passage_oracle" / f"b320_L1200_d{depth:g}"
        (record,) = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        (sample,) = load_task("multidoc_qa", data_dir=str(shared_data), tokenizer=tokenizer, length=1200, n=1,
                              depth=depth, split="test")  # fmt: skip
        prompt = bench_run.encode_sample(tokenizer, sample, chat_template=False)
        documents = tuple(map(tuple, sample.meta["document_token_spans"]))
        assert documents[-1][1] == len(prompt.context_ids) and len(documents) == sample.meta["n_documents"]
        kept = passages_to_keep(documents, budget=320, n_stabilizers=bench_run.default_stabilizers(320))
        gold = documents[sample.meta["gold_index"]]
        assert record["status"] == "ok" and len(kept) >= 2
        if gold in kept:
            held_gold.append(depth)
            assert record["needle_held"] == [1.0]
        elif gold[1] <= len(prompt.context_ids) - 320:  # too old for the newest entries to hold
            assert record["needle_held"][0] < 1.0
    assert held_gold  # the oracle's choice met the gold passage in at least one prompt
