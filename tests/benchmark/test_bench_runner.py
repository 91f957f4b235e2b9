"""The runner and the summary end to end on a tiny random Llama with a word-level tokenizer built in code."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from tiny import tiny_locret
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import locret
from benchmark import run as bench_run
from benchmark import summary
from benchmark.infinite_bench.generators import NOISE, PASSKEY_NEEDLE, PASSKEY_QUESTION
from benchmark.infinite_bench.templates import TEMPLATES
from benchmark.methods.base import Method

SPECIALS = ["<unk>", "</s>"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Words, punctuation and single digits of the passkey prompts; anything else is ``<unk>``."""
    text = TEMPLATES["completion"]["passkey"] + NOISE + PASSKEY_NEEDLE + PASSKEY_QUESTION
    words = sorted(set(re.findall(r"[A-Za-z]+|[^\sA-Za-z0-9]", text)) | set("0123456789"))
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(True)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> tuple[Path, Path]:
    """A saved tiny Locret model + tokenizer, and a heads adapter for it."""
    root = tmp_path_factory.mktemp("tiny_model")
    tokenizer = word_tokenizer()
    model = tiny_locret(vocab_size=len(tokenizer), max_position_embeddings=512)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    locret.save_heads(model, root / "heads")
    return root / "model", root / "heads"


def _argv(model_dir: Path, heads: Path, out: Path) -> list[str]:
    return [
        "--model", str(model_dir), "--heads", str(heads), "--task", "passkey",
        "--method", "locret,streaming_llm", "--budget", "64,128", "--length", "300",
        "--depth", "0.5", "--n", "2", "--chunk-size", "64", "--dtype", "float32",
        "--threads", "1", "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()  # the runner's --threads 1 (tiny models run fastest on one)
    yield
    torch.set_num_threads(threads)


def test_runner_end_to_end_resumes_and_summarises(tiny_dir, tmp_path, monkeypatch):
    model_dir, heads = tiny_dir
    out = tmp_path / "runs"
    calls = {"generate": 0, "prepare": 0}
    original_generate, original_prepare = Method.generate, Method.prepare

    def counting_generate(self, *args, **kwargs):
        calls["generate"] += 1
        return original_generate(self, *args, **kwargs)

    def counting_prepare(self, *args, **kwargs):
        calls["prepare"] += 1
        return original_prepare(self, *args, **kwargs)

    monkeypatch.setattr(Method, "generate", counting_generate)
    monkeypatch.setattr(Method, "prepare", counting_prepare)
    metrics = bench_run.main(_argv(model_dir, heads, out))
    assert len(metrics) == 4  # 2 methods x 2 budgets x 1 length x 1 depth
    assert calls["generate"] == 8 and calls["prepare"] == 1  # StreamingLLM reuses the loaded model

    for case in metrics:
        assert case["status"] == "complete" and case["n"] == 2 and 0.0 <= case["mean_score"] <= 1.0
        folder = (
            out / bench_run.Case(**{k: case[k] for k in ("task", "method", "budget", "length", "depth")}).key
        )
        lines = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        assert len(lines) == 2
        for record in lines:
            assert {"id", "prediction", "answers", "score", "prompt_tokens", "prefill_tokens_per_second",
                    "decode_tokens_per_second", "peak_cache_bytes"} <= set(record)  # fmt: skip
            assert abs(record["prompt_tokens"] - 300) <= 6 and record["question_tokens"] > 0
            # the cache never held more than budget + chunk entries per head
            assert record["cache_length_after_prefill"] <= case["budget"] + record["question_tokens"]
        config = json.loads((folder / "config.json").read_text())
        assert config["model"] == str(model_dir) and config["dtype"] == config["heads_dtype"] == "float32"
        assert config["machine"]["cpu_count"] and config["machine"]["torch"] == torch.__version__
        assert config["machine"]["cpu"] == bench_run.cpu_model() != ""
        assert config["method"]["name"] == case["method"] and config["style"] == "completion"

    # Resume: nothing left to do, so no model is loaded and nothing is generated.
    calls.update(generate=0, prepare=0)
    again = bench_run.main(_argv(model_dir, heads, out))
    assert calls == {"generate": 0, "prepare": 0}
    assert [m["mean_score"] for m in again] == [m["mean_score"] for m in metrics]

    # A torn sample is redone, and only that one.
    folder = out / "passkey/streaming_llm/b64_L300_d0.5"
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    (folder / "predictions.jsonl").write_text(lines[0] + "\n" + lines[1][:10])
    bench_run.main(_argv(model_dir, heads, out))
    assert calls["generate"] == 1
    redone = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(redone) == 2 and redone[0] == json.loads(lines[0])  # torn line dropped, sample redone

    results = tmp_path / "results"
    summary.main([str(out), "--out", str(results)])
    table = (results / "results.md").read_text()
    assert "| passkey |" in table and "locret" in table and "streaming_llm" in table
    pngs = sorted(p.name for p in results.glob("*.png"))
    assert any(name.startswith("score_vs_budget") for name in pngs)
    assert not any(name.startswith("score_vs_length") for name in pngs)  # a single length: no curve
    for png in results.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_more_samples_extend_a_case_at_a_fixed_depth(tiny_dir, tmp_path, monkeypatch):
    model_dir, heads = tiny_dir
    argv = _argv(model_dir, heads, tmp_path / "runs")
    argv[argv.index("--method") + 1] = "streaming_llm"
    argv[argv.index("--budget") + 1] = "64"
    (first,) = bench_run.main(argv)
    folder = tmp_path / "runs/passkey/streaming_llm/b64_L300_d0.5"
    assert first["n"] == 2
    stored = (folder / "predictions.jsonl").read_text()
    calls = []
    original = Method.generate
    monkeypatch.setattr(Method, "generate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    argv[argv.index("--n") + 1] = "3"
    (grown,) = bench_run.main(argv)
    assert len(calls) == 1 and grown["n"] == 3  # only the third key ran; the first two were kept as they were
    assert (folder / "predictions.jsonl").read_text().startswith(stored)
    argv[argv.index("--n") + 1] = "2"
    with pytest.raises(ValueError, match="differs in n"):  # fewer samples than stored: refused
        bench_run.main(argv)
    sweep = [a for a in argv if a not in ("--depth", "0.5")]
    sweep[sweep.index("--out") + 1] = str(tmp_path / "sweep")
    bench_run.main(sweep)  # a depth sweep spreads its depths by n: the same keys do not come back
    sweep[sweep.index("--n") + 1] = "3"
    with pytest.raises(ValueError, match="differs in n"):
        bench_run.main(sweep)


def test_shards_split_a_case_and_fill_one_folder(tiny_dir, tmp_path, monkeypatch):
    model_dir, heads = tiny_dir
    argv = _argv(model_dir, heads, tmp_path / "runs")
    argv[argv.index("--method") + 1] = "streaming_llm"
    argv[argv.index("--budget") + 1] = "64"
    argv[argv.index("--n") + 1] = "3"
    calls = []
    original = Method.generate
    monkeypatch.setattr(Method, "generate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    (first,) = bench_run.main([*argv, "--shard", "0/2"])
    assert len(calls) == 2 and first["n"] == 2 and first["status"] == "partial"  # samples 0 and 2
    (second,) = bench_run.main([*argv, "--shard", "1/2"])
    assert len(calls) == 3 and second["n"] == 3 and second["status"] == "complete"  # sample 1, then all three
    folder = tmp_path / "runs/passkey/streaming_llm/b64_L300_d0.5"
    ids = [json.loads(line)["id"] for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 3
    assert not list(folder.glob("*.tmp"))  # config and metrics written via per-process temporary files
    (unsharded,) = bench_run.main(argv)
    assert len(calls) == 3 and unsharded == second  # nothing left to run
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit):
            bench_run.parse_args([*argv, "--shard", bad])


def test_a_case_refuses_other_heads_under_the_same_path(tiny_dir, tmp_path):
    model_dir, heads = tiny_dir
    changed = tmp_path / "heads"
    shutil.copytree(heads, changed)
    argv = _argv(model_dir, changed, tmp_path / "runs")
    argv[argv.index("--budget") + 1] = "64"
    argv[argv.index("--n") + 1] = "1"
    bench_run.main(argv)
    config = json.loads((tmp_path / "runs/passkey/locret/b64_L300_d0.5/config.json").read_text())
    assert len(config["heads_digest"]) == 16
    assert "heads_digest" not in json.loads(
        (tmp_path / "runs/passkey/streaming_llm/b64_L300_d0.5/config.json").read_text()
    )
    other = tiny_locret(vocab_size=len(word_tokenizer()), max_position_embeddings=512, seed=5)
    locret.save_heads(other, changed)  # new weights where the old ones were: same --heads argument
    with pytest.raises(ValueError, match="differs in heads_digest"):
        bench_run.main(argv)


def test_folders_of_older_versions_are_compared_by_what_they_ran():
    """Before ``heads_dtype`` was recorded the heads took the model's dtype; before ``heads_digest`` existed
    the heads file was not recorded, so it cannot be checked."""
    current = {"model": "m", "dtype": "bfloat16", "heads_dtype": "float32", "heads_digest": "ab", "n": 5}
    older = {"model": "m", "dtype": "bfloat16", "n": 5}
    assert bench_run._changed_settings(older, current) == ["heads_dtype"]
    assert bench_run._changed_settings(older, {**current, "heads_dtype": "bfloat16"}) == []
    assert bench_run._changed_settings({**current, "heads_digest": "cd"}, current) == ["heads_digest"]
    assert bench_run._changed_settings({**current, "n": 2}, current) == ["n"]


def test_full_cache_marks_prompts_beyond_the_window(tiny_dir, tmp_path):
    model_dir, heads = tiny_dir
    argv = _argv(model_dir, heads, tmp_path / "runs")
    argv[argv.index("--method") + 1] = "full"
    argv[argv.index("--length") + 1] = "600"  # the tiny window is 512
    argv[argv.index("--n") + 1] = "1"
    (metrics,) = bench_run.main(argv)
    assert metrics["budget"] is None and metrics["mean_score"] is None
    assert metrics["status"] == bench_run.NA_WINDOW


def test_question_is_the_local_tail():
    tokenizer = word_tokenizer()
    from benchmark.sample import Sample

    sample = Sample(id="x", context="The sky is blue.", question=" What is the pass key?", answers=["1"],
                    task="passkey", max_new_tokens=4, prefix="Find it.")  # fmt: skip
    prompt = bench_run.encode_sample(tokenizer, sample, chat_template=False)
    assert prompt.n_question == len(tokenizer.encode(sample.question, add_special_tokens=False))
    assert tokenizer.decode(prompt.ids[-prompt.n_question :]) == "What is the pass key ?"


def test_shared_contexts_prefill_each_repeated_context_once():
    calls = []

    class Recording:
        def prefill_context(self, model, input_ids, config, track_positions):
            calls.append(input_ids)
            return f"cache{len(calls)}"

    a, b, c = (1, 2, 3), (4, 5), (6,)
    contexts = bench_run.SharedContexts([a, b, a, c, c])
    ids = torch.zeros(1, 3, dtype=torch.long)
    assert contexts.get(Recording(), None, ids, None, b) == (None, 0.0, False)  # alone: not worth a copy
    cache, _, reused = contexts.get(Recording(), None, ids, None, a)
    assert (cache, reused) == ("cache1", False)
    cache, _, reused = contexts.get(Recording(), None, ids, None, a)
    assert (cache, reused) == ("cache1", True) and len(calls) == 1
    cache, _, reused = contexts.get(Recording(), None, ids, None, c)
    assert (cache, reused) == ("cache2", False) and len(calls) == 2


def test_shared_contexts_never_report_a_reuse_of_no_cache():
    """A method that cannot share a context (``prefill_context`` None: KVzip, LongHeads) runs every question
    alone, and its records say so."""

    class Unshared:
        def prefill_context(self, model, input_ids, config, track_positions):
            return None

    context = (1, 2, 3)
    contexts = bench_run.SharedContexts([context, context])
    ids = torch.zeros(1, 3, dtype=torch.long)
    for _ in range(2):
        cache, _, reused = contexts.get(Unshared(), None, ids, None, context)
        assert cache is None and not reused


def test_summary_grids_per_length_and_across_lengths(tmp_path):
    def row(method, budget, length, score, status="complete"):
        return {"task": "passkey", "method": method, "budget": budget, "length": length, "depth": 0.5,
                "mean_score": score, "n": 1, "status": status}  # fmt: skip

    rows = [row("full", None, 4096, 1.0), row("locret", 256, 4096, 0.0), row("locret", 1024, 4096, 1.0),
            row("full", None, 8192, None, bench_run.NA_WINDOW), row("locret", 1024, 8192, 0.0)]  # fmt: skip
    text = summary.markdown(rows)
    across = text[text.index("## passkey, depth 0.5, every length") :]
    assert "| length | method | b=256 | b=1024 | full |\n|---|---|---|---|---|\n" in across
    assert "| 4096 | locret | 0.0 | 100.0 |  |" in across
    assert "| 8192 | full |  |  | n/a (exceeds window) |" in across
    assert "| 8192 | locret |  | 0.0 |  |" in across
    assert "## passkey, length 8192, depth 0.5" in text
    written = summary.plots(rows, tmp_path)  # two lengths: one score-vs-length curve per budget
    curves = sorted(p.name for p in written if p.name.startswith("score_vs_length"))
    assert curves == ["score_vs_length_passkey_b1024_d0.5.png", "score_vs_length_passkey_b256_d0.5.png"]
    budget_curves = [p.name for p in written if p.name.startswith("score_vs_budget")]
    assert budget_curves == [
        "score_vs_budget_passkey_L4096_d0.5.png"
    ]  # 8192 ran one budget: a point, no curve
    assert not any(p.name.startswith("depth_by_length") for p in written)  # one depth: no map
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_summary_maps_a_length_by_depth_grid(tmp_path):
    rows = [
        {"task": "passkey", "method": m, "budget": 1024, "length": n, "depth": d, "mean_score": s, "n": 5}
        for m, s in (("locret", 1.0), ("streaming_llm", 0.0))
        for n in (4096, 8192)
        for d in (0.1, 0.9)
    ]
    written = sorted(p.name for p in summary.plots(rows, tmp_path))
    assert [n for n in written if not n.startswith("score_vs_length")] == [
        "depth_by_length_passkey_locret_b1024.png",
        "depth_by_length_passkey_streaming_llm_b1024.png",
    ]  # one budget: no score-vs-budget curve
    assert (tmp_path / written[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_joins_earlier_summaries_and_new_runs(tmp_path, capsys):
    def row(method, budget, length, score, folder):
        return {"task": "passkey", "method": method, "budget": budget, "length": length, "depth": 0.5,
                "mean_score": score, "n": 1, "status": "complete", "folder": folder}  # fmt: skip

    earlier = tmp_path / "earlier" / "results.json"
    earlier.parent.mkdir()
    earlier.write_text(json.dumps([row("locret", 1024, 131072, 1.0, "old/a"), row("locret", 512, 131072, 0.0, "old/b"),
                                   row("locret", 1024, 4096, 1.0, "old/c")]))  # fmt: skip
    case = tmp_path / "runs" / "passkey" / "locret" / "b512_L131072_d0.5"
    case.mkdir(parents=True)
    new = row("locret", 512, 131072, 1.0, "ignored")
    del new["folder"]
    (case / "metrics.json").write_text(json.dumps(new))

    rows = summary.collect([earlier, tmp_path / "runs"], lengths={131072})
    assert sorted((r["budget"], r["mean_score"], r["folder"]) for r in rows) == [
        (512, 1.0, str(case)),  # the later reading replaces the earlier one, and says so
        (1024, 1.0, "old/a"),
    ]
    assert f"passkey/locret/512/131072/0.5: {case} replaces old/b" in capsys.readouterr().out
    summary.main([str(earlier), str(tmp_path / "runs"), "--length", "131072", "--out", str(tmp_path / "out")])
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| locret | 100.0 | 100.0 |  |" in table and "| 4096 |" not in table
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["score_vs_budget_passkey_L131072_d0.5.png"]  # one length: no score-vs-length curve

    (tmp_path / "out" / "score_vs_length_passkey_b512_d0.5.png").write_bytes(b"an earlier summary's plot")
    (tmp_path / "out" / "notes.png").write_bytes(b"not a summary plot")
    summary.main([str(earlier), str(tmp_path / "runs"), "--length", "131072", "--out", str(tmp_path / "out")])
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["notes.png", "score_vs_budget_passkey_L131072_d0.5.png"]  # stale plot gone, others kept


def test_summary_tables_the_finished_samples_of_a_stopped_case(tmp_path):
    def write_case(method: str, scores: list[float], metrics_n: int | None, n: int = 4) -> Path:
        case = bench_run.Case("passkey", method, 64, 300, 0.5)
        folder = tmp_path / "runs" / case.key
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"case": dataclasses.asdict(case), "n": n}))
        records = [{"id": str(i), "score": s, "peak_cache_bytes": 1024, "prompt_tokens": 300}
                   for i, s in enumerate(scores)]  # fmt: skip
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (folder / "predictions.jsonl").write_text(lines + '{"id": "torn')  # a killed write
        if metrics_n is not None:
            finished = bench_run.summarise(case, records[:metrics_n], n)
            (folder / "metrics.json").write_text(json.dumps(finished))
        return folder

    write_case("locret", [1.0, 0.0, 1.0, 1.0], metrics_n=4)  # finished
    write_case("streaming_llm", [1.0, 0.0, 0.0], metrics_n=None)  # stopped before its first metrics
    write_case("surprisal", [0.0, 1.0, 1.0], metrics_n=1, n=6)  # extended to n=6, then stopped
    rows = {r["method"]: r for r in summary.collect([tmp_path / "runs"])}
    assert {m: (r["status"], r["n"], r["n_expected"], r["mean_score"]) for m, r in rows.items()} == {
        "locret": ("complete", 4, 4, 0.75),
        "streaming_llm": ("partial", 3, 4, 1 / 3),
        "surprisal": ("partial", 3, 6, 2 / 3),
    }
    summary.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| streaming_llm | 64 | 33.3 | 3 |" in table and table.count("| partial |") == 2
    at_two_budgets = [dict(rows["streaming_llm"], budget=budget) for budget in (64, 128)]
    assert summary.plots(at_two_budgets, tmp_path) == []  # partial cases are tabled, not plotted
    finished = [dict(row, status="complete") for row in at_two_budgets]
    assert [p.name for p in summary.plots(finished, tmp_path)] == ["score_vs_budget_passkey_L300_d0.5.png"]


def test_closed_book_answers_the_prompt_without_its_context(tiny_dir, tmp_path):
    model_dir, heads = tiny_dir
    argv = _argv(model_dir, heads, tmp_path / "runs")
    argv[argv.index("--method") + 1] = "closed_book"
    (metrics,) = bench_run.main(argv)
    assert metrics["budget"] is None and metrics["status"] == "complete" and metrics["n"] == 2
    folder = tmp_path / "runs/passkey/closed_book/bfull_L300_d0.5"
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    tokenizer = word_tokenizer()
    samples = bench_run.load_samples(bench_run.parse_args(argv), tokenizer, "passkey", 300, 0.5)
    for record, sample in zip(records, samples, strict=True):
        without = bench_run.encode_sample(tokenizer, sample.closed_book(), chat_template=False)
        assert record["id"] == sample.id and record["depth"] == sample.meta["depth"]
        assert record["prompt_tokens"] == len(without.ids) < 50  # the 300-token context is gone
        assert record["question_tokens"] == without.n_question > 0


def test_a_closed_book_sample_keeps_instruction_question_and_answers():
    from benchmark.sample import Sample

    sample = Sample(id="x", context="The pass key is 12.", question=" What is the pass key?", answers=["12"],
                    task="passkey", max_new_tokens=4, prefix="Find it.",
                    meta={"needle_char_spans": [(8, 19)]})  # fmt: skip
    closed = sample.closed_book()
    assert closed.prompt == "Find it. What is the pass key?" and closed.answers == ["12"] and not closed.meta
    assert sample.context and sample.meta  # the original is untouched
