"""Left-padded batches: every row evicts alone and generates exactly the tokens of its own batch-1 run."""

import copy

import pytest
import torch
from tiny import tiny_locret

import locret
from locret import LocretConfig
from locret.models import base

LENGTHS = (150, 30, 45)  # rows keep 40 (evicted), 24 and 39 entries after prefill: pads of 16 and 1
PAD = 0


def left_padded(
    lengths: tuple[int, ...], seed: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(3, 97, (1, length), generator=generator) for length in lengths]
    width = max(lengths)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - row.shape[1] :] = row[0]
        mask[index, width - row.shape[1] :] = 1
    return rows, ids, mask


def config_for(position_mode: str, decode_budget: int | None, score_pooling: int) -> LocretConfig:
    return LocretConfig(
        budget=40,
        chunk_size=16,
        n_stabilizers=8,
        n_local=6,
        position_mode=position_mode,
        decode_budget=decode_budget,
        score_pooling=score_pooling,
    )


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
@pytest.mark.parametrize("decode_budget", [None, 44])
@pytest.mark.parametrize("score_pooling", [1, 5])
def test_each_row_matches_its_batch1_run(arch, position_mode, decode_budget, score_pooling):
    model = tiny_locret(arch)
    config = config_for(position_mode, decode_budget, score_pooling)
    rows, ids, mask = left_padded(LENGTHS)
    new = 20
    alone = [
        locret.generate(model, row, config, max_new_tokens=new, eos_token_id=[]).new_tokens for row in rows
    ]
    batched = locret.generate(model, ids, config, max_new_tokens=new, eos_token_id=[], attention_mask=mask)
    theirs = model.generate(
        ids, attention_mask=mask, locret_config=config, max_new_tokens=new, do_sample=False
    )
    for index, tokens in enumerate(alone):
        assert torch.equal(batched.new_tokens[index], tokens[0]), index
        assert torch.equal(theirs[index, ids.shape[1] :], tokens[0]), index


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_is_never_kept_nor_attended(attn):
    model = tiny_locret("llama", attn=attn)
    config = config_for("absolute", 44, 1)
    rows, ids, mask = left_padded(LENGTHS)
    cache = locret.generation.prefill_prompt(model, ids, config, attention_mask=mask)
    layer = cache.layers[0]
    pads = layer.pad_counts()
    assert pads.tolist() == [layer.stored_length() - part for part in layer.real_lengths.tolist()]
    assert int(pads.max()) > 0  # the rows kept different numbers of entries
    for row in range(ids.shape[0]):
        assert torch.isneginf(layer.scores[row, :, : pads[row]]).all()
        assert torch.isfinite(layer.scores[row, :, pads[row] :]).all()
    # the pad entries' keys and values are never attended: scrambling them changes nothing
    scrambled = copy.deepcopy(cache)
    for layer in scrambled.layers:
        pad = ~layer.real_entries()[:, None, :, None]
        layer.keys = torch.where(pad, torch.randn_like(layer.keys) * 100, layer.keys)
        layer.values = torch.where(pad, torch.randn_like(layer.values) * 100, layer.values)
    tail = ids[:, cache.get_seq_length() :]
    logits = [model(input_ids=tail, past_key_values=c).logits for c in (cache, scrambled)]
    assert torch.equal(*logits)
    out = locret.generate(model, ids, config, max_new_tokens=8, eos_token_id=[], attention_mask=mask)
    for row, tokens in zip(rows, out.new_tokens, strict=True):
        assert torch.equal(
            locret.generate(model, row, config, max_new_tokens=8, eos_token_id=[]).new_tokens[0], tokens
        )


def test_padded_batch_refusals():
    model = tiny_locret("llama")
    config = config_for("repacked", None, 1)
    _, ids, mask = left_padded((30, 20))
    with pytest.raises(ValueError, match="only left-padded"):
        locret.generate(model, ids, config, attention_mask=mask.flip(1))
    short = mask.clone()
    short[1, : ids.shape[1] - 5] = 0
    with pytest.raises(ValueError, match="more than max\\(n_local, 1\\) = 6 real tokens"):
        locret.generate(model, ids, config, attention_mask=short)
    with pytest.raises(ValueError, match="builds its own cache"):
        locret.generate(
            model, ids, config, attention_mask=mask, cache=locret.generation.new_cache(model, config)
        )


def test_model_generate_beams_and_returned_sequences():
    model = tiny_locret("llama")
    config = config_for("repacked", 44, 1)
    rows, ids, mask = left_padded(LENGTHS)
    settings = dict(
        locret_config=config, max_new_tokens=6, num_beams=2, num_return_sequences=2, do_sample=False
    )
    batched = model.generate(ids, attention_mask=mask, **settings)[:, ids.shape[1] :]
    alone = torch.cat([model.generate(row, **settings)[:, row.shape[1] :] for row in rows])
    assert torch.equal(batched, alone)


@pytest.mark.parametrize("position_mode", ["repacked", "absolute"])
def test_each_row_counts_its_own_positions(monkeypatch, position_mode):
    """RoPE is relative, so a shifted row would still pick the same tokens; the positions must be the batch-1
    run's all the same (same rounding, and no row's positions grow with another row's length)."""
    model = tiny_locret("llama")
    config = config_for(position_mode, None, 1)
    rows, ids, mask = left_padded(LENGTHS)
    calls = []
    original = base.apply_rope
    monkeypatch.setattr(base, "apply_rope", lambda x, cos, sin: calls.append(cos) or original(x, cos, sin))
    cache = locret.generation.prefill_prompt(model, ids, config, attention_mask=mask)
    calls.clear()
    model(input_ids=ids[:, cache.get_seq_length() :], past_key_values=cache)
    query_cos, key_cos = calls[0], calls[1]  # layer 0: the query's rotation, then the keys'
    table = model.model.layers[0].self_attn.locret_rope.table(512, torch.float32, ids.device)[0]
    layer = cache.layers[0]
    for row, tokens in enumerate(rows):
        pads, real = int(layer.pad_counts()[row]), int(layer.real_lengths[row])
        if position_mode == "repacked":
            assert torch.equal(key_cos[row, 0, pads:], table[:real])
            assert torch.equal(query_cos[row, 0, -1], table[real - 1])
        else:
            assert torch.equal(key_cos[row, :, pads:], table[layer.positions[row, :, pads:]])
            assert int(layer.positions[row, 0, -1]) == tokens.shape[1] - 1
            assert torch.equal(query_cos[row, 0, -1], table[tokens.shape[1] - 1])
