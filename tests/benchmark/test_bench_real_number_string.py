"""End to end on the real SmolLM2-135M-Instruct: the shipped heads keep a 10-digit number whole."""

import dataclasses
import random

import pytest
import torch

import locret
from benchmark.infinite_bench.generators import generate_number_string
from benchmark.run import encode_sample
from locret.acquire import load_tokenizer
from locret.scorers import RetainingHeadScorer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scorer", ["recommended", "heads, pooling 15"])
def test_the_shipped_settings_keep_a_ten_digit_number_whole(smollm2, smollm2_dir, scorer):
    """number_string at 4K, its first prompt of the validation draw (seed 1000, depth 10%), budget 1024 with
    the question as the local tail: the heads' recommended settings and scorer (whole lines) answer it
    exactly, and so do their own scores with score pooling 15 (their settings in 0.3.x). With pooling 7
    (their settings until 0.3.0) one digit of its run "5555" was evicted and the reply was 611165551;
    SmolLM2 writes every digit as its own token, so a number is a span of ten entries."""
    tokenizer = load_tokenizer(smollm2_dir)
    sample = generate_number_string(tokenizer, 4096, 0.1, random.Random(1000), "completion")
    prompt = encode_sample(tokenizer, sample, chat_template=False)
    settings = dataclasses.replace(smollm2.locret_inference_config, n_local=prompt.n_question)
    cache = None
    if scorer != "recommended":
        settings = dataclasses.replace(settings, score_pooling=15)
        cache = locret.new_cache(smollm2, settings, RetainingHeadScorer())
    out = locret.generate(smollm2, torch.tensor([prompt.ids]), settings, max_new_tokens=12, cache=cache)
    reply = tokenizer.decode(out.new_tokens[0], skip_special_tokens=True)
    assert sample.answers == ["6111655551"] and reply.strip().startswith("6111655551"), reply
    assert out.cache_length_after_prefill == settings.budget + prompt.n_question
