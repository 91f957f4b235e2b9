"""A heads adapter's recommended scorer: recorded as JSON, checked against the recommended settings, used by
every cache made without an explicit scorer (generate, model.generate, sessions), and carried by a saved
session together with the state it holds between chunks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tiny import LineTokenizer, random_ids, tiny_locret, tiny_pair

import locret
from locret import LocretConfig, Session
from locret.adapter import HEADS_CONFIG_NAME, HEADS_WEIGHTS_NAME, read_heads_config
from locret.cache_io import decode_state, encode_state
from locret.scorers import LineScorer, RetainingHeadScorer, ScorerChoice, SnapKVScorer, StreamingLLMScorer
from locret.scorers.lines import line_end_tokens
from locret.scorers.segments import OWN_TOKENIZER_ENDS
from locret.train import convert

CONFIG = LocretConfig(budget=40, chunk_size=16, n_stabilizers=12, n_local=4)
SNAPKV = ScorerChoice("snapkv", {"window": 4, "kernel_size": 3})
BREAKS = set(range(0, 97, 11))  # ids the stand-in tokenizer decodes to a line break


def test_a_choice_builds_fresh_scorers_and_round_trips_through_json():
    choice = ScorerChoice.of(LineScorer(top_tokens=4))
    assert (
        choice.name == "lines" and choice.settings["top_tokens"] == 4 and "tokenizer" not in choice.settings
    )
    first, second = choice.build(), choice.build()
    assert first == LineScorer(top_tokens=4) and first is not second
    assert ScorerChoice.from_dict(json.loads(json.dumps(choice.to_dict())), "x") == choice
    assert ScorerChoice.from_dict(None, "x") is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"name": "nope", "settings": {}}, "unknown scorer 'nope'"),
        ({"name": "snapkv", "settings": {"widow": 3}}, r"no settings \['widow'\]"),
        ({"name": "lines", "settings": {"top_tokens": 0}}, "top_tokens must be None or an integer >= 1"),
        ({"name": "lines", "settings": {"tokenizer": "gpt2"}}, r"no settings \['tokenizer'\]"),
        ({"name": "lines"}, "exactly 'name' and 'settings'"),
        ({"name": "lines", "settings": [1]}, "'settings' must be an object"),
    ],
)
def test_a_bad_choice_is_a_value_error_naming_its_source(block, message):
    with pytest.raises(ValueError, match=message) as error:
        ScorerChoice.from_dict(block, "adapter.json")
    assert "adapter.json" in str(error.value)


def test_the_adapter_records_the_scorer_and_loading_attaches_it(tmp_path):
    model, vanilla = tiny_pair("llama")
    locret.save_heads(model, tmp_path / "heads", inference=CONFIG, scorer=SNAPKV)
    raw = json.loads((tmp_path / "heads" / HEADS_CONFIG_NAME).read_text())
    assert raw["format_version"] == 3 and raw["scorer"] == SNAPKV.to_dict()
    loaded = locret.from_pretrained(vanilla, heads=tmp_path / "heads")
    assert loaded.locret_scorer_choice == SNAPKV and loaded.locret_inference_config == CONFIG
    locret.save_heads(loaded, tmp_path / "again")  # the attached recommendation is written back
    assert read_heads_config(tmp_path / "again").scorer == SNAPKV
    other, _ = tiny_pair("llama", seed=1)
    locret.load_heads(other, tmp_path / "heads")
    assert other.locret_scorer_choice == SNAPKV


def test_a_version_2_adapter_recommends_the_heads_own_scores_and_may_not_name_a_scorer(tmp_path):
    model, _ = tiny_pair("llama")
    locret.save_heads(model, tmp_path / "heads", inference=CONFIG)
    config_file = tmp_path / "heads" / HEADS_CONFIG_NAME
    raw = json.loads(config_file.read_text())
    assert raw["scorer"] is None
    v2 = {key: value for key, value in raw.items() if key != "scorer"} | {"format_version": 2}
    config_file.write_text(json.dumps(v2))
    assert read_heads_config(tmp_path / "heads").scorer is None
    config_file.write_text(json.dumps(v2 | {"scorer": SNAPKV.to_dict()}))
    with pytest.raises(ValueError, match=r"unknown keys \['scorer'\]"):
        read_heads_config(tmp_path / "heads")


def test_a_scorer_that_cannot_serve_the_recommended_settings_is_refused(tmp_path):
    model, _ = tiny_pair("llama")
    pooled = LocretConfig(budget=40, chunk_size=16, n_stabilizers=12, n_local=4, score_pooling=3)
    lines = ScorerChoice("lines", {"max_line": 10})
    with pytest.raises(
        ValueError, match="cannot run the 'inference' settings: the lines scorer pools by line"
    ):
        locret.save_heads(model, tmp_path / "heads", inference=pooled, scorer=lines)
    locret.save_heads(model, tmp_path / "heads", inference=CONFIG, scorer=lines)
    config_file = tmp_path / "heads" / HEADS_CONFIG_NAME
    raw = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(raw | {"inference": {**raw["inference"], "score_pooling": 3}}))
    with pytest.raises(ValueError, match="cannot run the 'inference' settings") as error:
        read_heads_config(tmp_path / "heads")
    assert str(config_file) in str(error.value)


def test_caches_made_without_a_scorer_use_the_recommended_one_and_an_explicit_scorer_wins():
    model = tiny_locret("llama")
    assert isinstance(locret.new_cache(model, CONFIG).scorer, RetainingHeadScorer)  # nothing recommended
    model.locret_scorer_choice = SNAPKV
    assert locret.new_cache(model, CONFIG).scorer == SnapKVScorer(window=4, kernel_size=3)
    assert isinstance(locret.new_cache(model, CONFIG, StreamingLLMScorer()).scorer, StreamingLLMScorer)
    ids = random_ids(150)
    by_default = locret.generate(model, ids, CONFIG, max_new_tokens=6)
    explicit = locret.new_cache(model, CONFIG, SnapKVScorer(window=4, kernel_size=3))
    assert torch.equal(by_default.sequences, locret.generate(model, ids, CONFIG, 6, cache=explicit).sequences)
    heads = locret.new_cache(model, CONFIG, RetainingHeadScorer())
    assert not torch.equal(
        by_default.sequences, locret.generate(model, ids, CONFIG, 6, cache=heads).sequences
    )
    model.locret_inference_config = CONFIG
    through_hf = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert torch.equal(through_hf, by_default.sequences)


def test_settings_the_recommended_scorer_cannot_run_are_an_error_that_says_what_to_do():
    model = tiny_locret("llama")
    model.locret_scorer_choice = ScorerChoice("lines", {"max_line": 10})
    pooled = LocretConfig(budget=40, chunk_size=16, n_stabilizers=12, n_local=4, score_pooling=3)
    with pytest.raises(
        ValueError, match="recommend the 'lines' scorer .* pools by line.*RetainingHeadScorer"
    ):
        locret.generate(model, random_ids(100), pooled, max_new_tokens=2)
    cache = locret.new_cache(model, pooled, RetainingHeadScorer())  # the way out the message names
    assert locret.generate(
        model, random_ids(100), pooled, max_new_tokens=2, cache=cache
    ).new_tokens.shape == (1, 2)


def test_convert_recommend_rewrites_the_recommendation_and_leaves_the_weights(tmp_path):
    model, _ = tiny_pair("llama")
    adapter = locret.save_heads(model, tmp_path / "heads", metadata={"steps": 3}, inference=CONFIG)
    weights = (adapter / HEADS_WEIGHTS_NAME).read_bytes()
    convert.main(["recommend", str(adapter), "--scorer", json.dumps(SNAPKV.to_dict())])
    config = read_heads_config(adapter)
    assert config.scorer == SNAPKV and config.inference == CONFIG and config.training == {"steps": 3}
    convert.main(["recommend", str(adapter), "--heads-scorer", "--inference", '{"budget": 256}'])
    config = read_heads_config(adapter)
    assert config.scorer is None and config.inference == LocretConfig(budget=256)
    assert (adapter / HEADS_WEIGHTS_NAME).read_bytes() == weights
    pooled = '{"budget": 64, "n_stabilizers": 16, "score_pooling": 5}'
    with pytest.raises(ValueError, match="pools by line"):
        convert.recommend(
            adapter, convert._inference_settings(pooled), ScorerChoice("lines", {"max_line": 10})
        )


def test_scorer_state_round_trips_exactly_without_pickle():
    state = {
        "moments": (3, torch.tensor([1.5, 2.0]), torch.tensor([[4.0]])),
        "open": {0: [0.25, -1.0], 1: []},
        "input": {0: (2.5, 7)},
        "next_surprisal": None,
        "flag": True,
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.loads(json.dumps(encode_state(state, tensors, "s.")))
    decoded = decode_state(encoded, tensors, torch.device("cpu"))
    assert (
        decoded.keys() == state.keys()
        and decoded["open"] == state["open"]
        and decoded["input"] == {0: (2.5, 7)}
    )
    assert decoded["moments"][0] == 3 and isinstance(decoded["moments"], tuple)
    assert all(torch.equal(a, b) for a, b in zip(decoded["moments"][1:], state["moments"][1:], strict=True))
    assert decoded["next_surprisal"] is None and decoded["flag"] is True
    with pytest.raises(ValueError, match="holds a object"):
        encode_state({"x": object()}, {}, "s.")


def line_scorer() -> LineScorer:
    return LineScorer(tokenizer=LineTokenizer(BREAKS), max_line=10)


def test_a_session_with_a_rescoring_scorer_equals_one_long_prompt_and_survives_save_and_load(tmp_path):
    model = tiny_locret("llama")
    document, question = random_ids(200), random_ids(9, seed=1)
    expected = locret.generate(
        model,
        torch.cat([document, question], 1),
        CONFIG,
        8,
        cache=locret.new_cache(model, CONFIG, line_scorer()),
    ).new_tokens
    session = Session(model, CONFIG, scorer=line_scorer())
    for start in range(0, 200, 37):  # pieces that do not line up with chunks
        session.feed(document[:, start : start + 37])
    assert session.cache.scorer_state  # the line scorer carries state between chunks
    assert torch.equal(session.ask(question, max_new_tokens=8).token_ids, expected[0])
    path = session.save(tmp_path / "session.safetensors")
    with pytest.raises(ValueError, match="was read with the scorer"):
        Session.load(path, model, scorer=LineScorer(tokenizer=LineTokenizer(BREAKS), max_line=12))
    restored = Session.load(path, model, scorer=line_scorer())
    assert torch.equal(restored.ask(question, max_new_tokens=8).token_ids, expected[0])
    more = random_ids(60, seed=2)  # reading on after the load gives what reading on without it gives
    session.feed(more)
    restored.feed(more)
    assert torch.equal(
        restored.ask(question, max_new_tokens=8).token_ids, session.ask(question, max_new_tokens=8).token_ids
    )


def test_a_session_without_settings_takes_the_recommended_ones():
    model = tiny_locret("llama")
    model.locret_inference_config, model.locret_scorer_choice = CONFIG, SNAPKV
    session = Session(model)
    assert session.config == CONFIG and session.cache.scorer == SNAPKV.build()


def test_a_session_file_of_format_1_loads_with_the_heads_own_scores(tmp_path):
    """Before 0.4.0 a session file recorded no scorer (every session scored with the heads) and no recent
    tokens; it still loads, and answers as the session that wrote it."""
    model = tiny_locret("llama")
    session = Session(model, CONFIG)  # nothing recommended: the heads' own scores
    session.feed(random_ids(150))
    path = session.save(tmp_path / "v2.safetensors")
    with safe_open(str(path), framework="pt") as file:
        metadata = json.loads(file.metadata()["locret_session"])
        tensors = {key: file.get_tensor(key) for key in file.keys() if key != "recent"}
    old = {key: value for key, value in metadata.items() if key not in ("scorer", "scorer_state")}
    save_file(
        tensors,
        tmp_path / "v1.safetensors",
        metadata={"locret_session": json.dumps(old | {"format_version": 1})},
    )
    model.locret_scorer_choice = SNAPKV  # what the heads recommend now does not change an old session
    restored = Session.load(tmp_path / "v1.safetensors", model)
    assert isinstance(restored.cache.scorer, RetainingHeadScorer)
    question = random_ids(7, seed=3)
    assert torch.equal(
        restored.ask(question, max_new_tokens=6).token_ids, session.ask(question, max_new_tokens=6).token_ids
    )


def test_a_saved_locret_checkpoint_keeps_the_recommended_settings_and_scorer(tmp_path):
    """``save_pretrained`` of a Locret model writes the recommendation into config.json; loading the
    checkpoint attaches it again, so the reloaded model keeps running as the saved one did."""
    model, vanilla = tiny_pair("llama")
    locret.save_heads(model, tmp_path / "heads", inference=CONFIG, scorer=SNAPKV)
    loaded = locret.from_pretrained(vanilla, heads=tmp_path / "heads")
    loaded.save_pretrained(tmp_path / "checkpoint")
    raw = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert raw["locret_scorer"] == SNAPKV.to_dict() and raw["locret_inference"]["budget"] == CONFIG.budget
    again = locret.from_pretrained(tmp_path / "checkpoint")
    assert again.locret_scorer_choice == SNAPKV and again.locret_inference_config == CONFIG
    ids = random_ids(150)
    assert torch.equal(
        locret.generate(again, ids, max_new_tokens=6).sequences,
        locret.generate(loaded, ids, max_new_tokens=6).sequences,
    )
    raw["locret_scorer"] = {"name": "lines", "settings": {"max_line": 10}}
    raw["locret_inference"]["score_pooling"] = 3
    (tmp_path / "checkpoint" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="config.json of .*cannot run the 'inference' settings"):
        locret.from_pretrained(tmp_path / "checkpoint")


def test_a_padded_batch_runs_the_recommended_line_scorer_row_by_row(monkeypatch):
    """Each row of a left-padded batch is prefilled alone with a fresh recommended scorer, so its tokens are
    its batch-1 run's; the model's own line ends are built once per process, not per cache."""
    model = tiny_locret("llama")
    model.config.name_or_path = "tiny-with-line-breaks"
    model.locret_scorer_choice = ScorerChoice("lines", {"max_line": 10})
    key = ("LineScorer", "tiny-with-line-breaks", model.config.vocab_size)
    monkeypatch.setitem(
        OWN_TOKENIZER_ENDS, key, line_end_tokens(LineTokenizer(BREAKS), model.config.vocab_size)
    )
    rows = [random_ids(length, seed=length) for length in (90, 130, 70)]
    width = max(row.shape[1] for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for index, row in enumerate(rows):
        ids[index, width - row.shape[1] :], mask[index, width - row.shape[1] :] = row[0], 1
    alone = [locret.generate(model, row, CONFIG, 10, eos_token_id=[]).new_tokens[0] for row in rows]
    batched = locret.generate(model, ids, CONFIG, 10, eos_token_id=[], attention_mask=mask).new_tokens
    assert all(torch.equal(batched[index], tokens) for index, tokens in enumerate(alone))
    heads_alone = locret.generate(
        model,
        rows[1],
        CONFIG,
        10,
        eos_token_id=[],
        cache=locret.new_cache(model, CONFIG, RetainingHeadScorer()),
    )
    assert not torch.equal(heads_alone.new_tokens[0], alone[1])  # the line scorer ran, not the heads alone
