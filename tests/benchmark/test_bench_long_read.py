"""``benchmark.long_read``: the million-token input, where its measured segments end, how replies score."""

import pytest

from benchmark.long_read import build_input, build_niah_input, next_boundary, questions
from locret.demo import NOISE, PASSKEY_NEEDLE


class WordTokenizer:
    """One token per whitespace-separated word (ids: word lengths)."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [len(word) for word in text.split()]


@pytest.mark.parametrize(("length", "depth"), [(2000, 0.0), (5000, 0.5), (20000, 0.9), (20000, 1.0)])
def test_the_input_has_the_length_and_the_key_at_its_depth(length, depth):
    ids, key = build_input(WordTokenizer(), length, depth, seed=3)
    assert abs(ids.numel() - length) <= len(NOISE.split())
    needle = [len(word) for word in PASSKEY_NEEDLE.format(key=key).split()]
    starts = [i for i in range(ids.numel()) if ids[i : i + len(needle)].tolist() == needle]
    assert len(starts) == 1
    assert abs(starts[0] / ids.numel() - depth) < 0.02  # the instruction comes first


def test_a_depth_outside_the_input_is_refused():
    with pytest.raises(ValueError, match="depth"):
        build_input(WordTokenizer(), 2000, 1.5, seed=0)


def test_segments_double_up_to_the_segment_then_step_by_it():
    ends, done = [], 0
    while done < 40000:
        done = next_boundary(done, segment=16384, piece=2048)
        ends.append(done)
    assert ends == [2048, 4096, 8192, 16384, 32768, 49152]


def test_replies_are_scored_by_the_key_or_the_colour():
    passkey, sky, grass = questions("04213")
    assert passkey.correct(" 04213. Remember") and not passkey.correct(" 4213")
    assert sky.correct(" blue. The grass is green.") and not sky.correct(" green.\nblue")
    assert grass.correct(" Green") and not grass.correct("")


@pytest.mark.parametrize("length", [3000, 200_000])  # 200K words wrap around the test books' ~800K chars
def test_a_niah_text_input_has_its_length_one_needle_and_its_question(shared_data, ws_tokenizer, length):
    ids, (asked,) = build_niah_input(ws_tokenizer, length, 0.5, seed=0, data_dir=str(shared_data))
    assert abs(ids.numel() - length) <= 0.02 * length
    text = ws_tokenizer.decode(ids.tolist())
    assert asked.kind == "needle" and text.count(asked.expected) == 1
    assert abs(text.index(asked.expected) / len(text) - 0.5) < 0.05
    assert asked.text.startswith("\n\nQuestion: ") and asked.expected not in asked.text
    assert asked.correct(f" {asked.expected}.\nMore") and not asked.correct(" something else")
