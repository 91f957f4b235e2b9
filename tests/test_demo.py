"""``python example.py`` needs only the installed package; its prompt is the benchmark's passkey prompt."""

import random
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import pytest

import locret
from benchmark.infinite_bench.generators import generate_passkey
from locret.demo import is_correct, passkey_prompt

ROOT = Path(__file__).resolve().parents[1]


class WordTokenizer:
    """One token per whitespace-separated word: enough to fit a prompt's length."""

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]


@pytest.mark.parametrize(("length", "depth", "seed"), [(600, 0.0, 0), (2000, 0.5, 1), (5000, 0.9, 2)])
def test_the_demo_prompt_is_the_benchmarks_passkey_prompt(length, depth, seed):
    ours = passkey_prompt(WordTokenizer(), length, depth, random.Random(seed))
    theirs = generate_passkey(WordTokenizer(), length, depth, random.Random(seed), style="completion")
    assert ours.prompt == theirs.prompt and ours.key == theirs.answers[0]
    assert abs(ours.n_tokens - length) <= 0.01 * length and ours.prompt.endswith("The pass key is")
    assert f"The pass key is {ours.key}. Remember it." in ours.prompt


def test_a_reply_is_correct_when_its_first_number_is_the_key():
    assert is_correct(" 04213. The pass key is 04213.", "04213")
    assert not is_correct(" 4213", "04213") and not is_correct(" none", "04213")


def test_example_imports_nothing_outside_the_package():
    """A fresh clone has no ``benchmark`` extras (rouge-score) installed; the demo must not need them."""
    script = (
        "import sys; sys.path.insert(0, '.'); import example; "
        "extra = sorted(m for m in sys.modules if m.split('.')[0] in ('benchmark', 'rouge_score')); "
        "assert not extra, extra"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_example_settings_come_from_the_heads_else_defaults_for_any_family():
    sys.path.insert(0, str(ROOT))
    import example

    no_flags = Namespace(budget=None, chunk_size=None, n_stabilizers=None, n_local=None, score_pooling=None)
    recommended = locret.LocretConfig(budget=64, chunk_size=32, n_stabilizers=8, n_local=4, score_pooling=3)
    model = SimpleNamespace(
        config=SimpleNamespace(model_type="locret_llama", hidden_size=64), locret_inference_config=recommended
    )
    assert example.settings_for(model, no_flags) == recommended
    assert example.settings_for(model, Namespace(**{**vars(no_flags), "budget": 128})).budget == 128
    unknown_family = SimpleNamespace(config=SimpleNamespace(model_type="locret_newfamily", hidden_size=4096))
    assert example.settings_for(unknown_family, no_flags) == locret.LocretConfig()  # no KeyError
    paper = SimpleNamespace(config=SimpleNamespace(model_type="locret_phi3", hidden_size=3072))
    assert example.settings_for(paper, no_flags) == locret.PAPER_SETTINGS["phi3"]
