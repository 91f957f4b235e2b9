"""Sessions: an input fed in pieces equals one long prompt, asking leaves the session as it was, and a saved
session answers as before, for the model that saved it only."""

import copy

import pytest
import torch
from safetensors.torch import save_file
from tiny import random_ids, tiny_locret, tiny_pair

import locret
from locret import LocretConfig, Session
from locret.cache_io import cache_state
from locret.session import chat_prompt_parts

NEW_TOKENS = 8
DOCUMENT = (
    176  # a multiple of chunk_size: a question shorter than n_local then reaches back into the document
)
SPLITS = [[DOCUMENT], [5] * 35 + [1], [1, 15, 16, 17, 50, 77], [120, 56], [160, 16]]


def make_config(position_mode: str = "repacked", score_pooling: int = 1) -> LocretConfig:
    return LocretConfig(
        budget=40,
        chunk_size=16,
        n_stabilizers=8,
        n_local=6,
        position_mode=position_mode,
        score_pooling=score_pooling,
    )


SETTINGS = [
    pytest.param(mode, pooling, id=f"{mode}-pool{pooling}")
    for mode in ("repacked", "absolute")
    for pooling in (1, 5)
]


def assert_same_state(a: Session, b: Session) -> None:
    (tensors_a, layers_a), (tensors_b, layers_b) = cache_state(a.cache), cache_state(b.cache)
    assert layers_a == layers_b
    assert tensors_a.keys() == tensors_b.keys() and tensors_a
    for key in tensors_a:
        assert torch.equal(tensors_a[key], tensors_b[key]), key
    assert torch.equal(a.pending, b.pending)


def fed(model, config: LocretConfig, pieces: list[int], document: torch.Tensor) -> Session:
    session = Session(model, config)
    start = 0
    for length in pieces:
        session.feed(document[:, start : start + length])
        start += length
    assert start == session.tokens_read
    return session


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize(("position_mode", "score_pooling"), SETTINGS)
def test_pieces_equal_one_long_prompt(arch, position_mode, score_pooling):
    model = tiny_locret(arch)
    config = make_config(position_mode, score_pooling)
    document = random_ids(DOCUMENT)
    at_once = fed(model, config, [DOCUMENT], document)
    # the cache holds exactly what the chunked prefill of the whole document stores for those tokens
    committed = at_once.cache.get_seq_length()
    assert committed % config.chunk_size == 0 and at_once.pending.shape[1] >= config.n_local
    reference = locret.prefill_prompt(model, document[:, : committed + config.n_local], config)
    for ours, theirs in zip(at_once.cache.layers, reference.layers, strict=True):
        for name in ("keys", "values", "scores", "positions"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
    questions = [random_ids(3, seed=1), random_ids(10, seed=2)]  # shorter and longer than n_local
    for pieces in SPLITS[1:]:
        in_pieces = fed(model, config, pieces, document)
        assert_same_state(in_pieces, at_once)
        for question in questions:
            expected = locret.generate(
                model, torch.cat([document, question], dim=1), config, max_new_tokens=NEW_TOKENS
            )
            assert torch.equal(
                in_pieces.ask(question, max_new_tokens=NEW_TOKENS).token_ids, expected.new_tokens[0]
            )


@pytest.mark.parametrize(("position_mode", "score_pooling"), SETTINGS)
def test_asking_leaves_the_session_unchanged(position_mode, score_pooling):
    model = tiny_locret("llama")
    config = make_config(position_mode, score_pooling)
    document, question = random_ids(150), random_ids(7, seed=1)
    session = fed(model, config, [100], document)
    before = copy.deepcopy(session)
    first = session.ask(question, max_new_tokens=NEW_TOKENS)
    second = session.ask(question.tolist()[0], max_new_tokens=NEW_TOKENS)
    assert torch.equal(first.token_ids, second.token_ids) and first.text is None
    assert_same_state(session, before)
    session.feed(document[:, 100:])  # reading on after a question is reading the whole input at once
    assert_same_state(session, fed(model, config, [150], document))
    expected = locret.generate(
        model, torch.cat([document, question], dim=1), config, max_new_tokens=NEW_TOKENS
    )
    assert torch.equal(session.ask(question, max_new_tokens=NEW_TOKENS).token_ids, expected.new_tokens[0])


@pytest.mark.parametrize("arch", ["llama", "phi3"])
@pytest.mark.parametrize(("position_mode", "score_pooling"), SETTINGS)
def test_saved_session_answers_as_before(tmp_path, arch, position_mode, score_pooling):
    model = tiny_locret(arch)
    config = make_config(position_mode, score_pooling)
    document, question = random_ids(170), random_ids(5, seed=1)
    session = fed(model, config, [120], document)
    path = session.save(tmp_path / "session.safetensors")
    loaded = Session.load(path, model)
    assert loaded.config == config
    assert_same_state(loaded, session)
    assert torch.equal(
        loaded.ask(question, max_new_tokens=NEW_TOKENS).token_ids,
        session.ask(question, max_new_tokens=NEW_TOKENS).token_ids,
    )
    for reader in (session, loaded):  # the pending tokens came back too: reading on gives the same cache
        reader.feed(document[:, 120:])
    assert_same_state(loaded, session)


def test_empty_session_saves_and_loads(tmp_path):
    model = tiny_locret("llama")
    session = Session(model, make_config())
    session.feed([5, 6, 7])  # fewer than n_local: nothing is prefilled yet
    loaded = Session.load(session.save(tmp_path / "s.safetensors"), model)
    assert loaded.tokens_read == 3 and not loaded.cache.layers[0].is_initialized
    assert torch.equal(loaded.ask([8]).token_ids, session.ask([8]).token_ids)


def perturbed(model, change):
    other = copy.deepcopy(model)
    with torch.no_grad():
        change(other)
    return other


@pytest.mark.parametrize(
    ("other", "differs"),
    [
        (lambda m: perturbed(m, lambda o: o.model.norm.weight.add_(1e-3)), "backbone"),
        (lambda m: perturbed(m, lambda o: o.retaining_heads[1].fc2.weight.add_(1e-3)), "retaining_heads"),
        (lambda m: tiny_locret("llama", seed=1), "backbone"),
        (lambda m: tiny_locret("llama", num_hidden_layers=3), "shapes"),
        (
            lambda m: tiny_locret("llama", rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
            "rope",
        ),
        (lambda m: tiny_locret("phi3"), "architecture"),
        (lambda m: copy.deepcopy(m).to(torch.bfloat16), "dtype"),
    ],
    ids=["backbone", "heads", "seed", "layers", "rope", "arch", "dtype"],
)
def test_loading_into_another_model_is_refused(tmp_path, other, differs):
    model = tiny_locret("llama")
    session = fed(model, make_config(), [100], random_ids(100))
    path = session.save(tmp_path / "session.safetensors")
    with pytest.raises(ValueError, match=f"{differs} differs"):
        Session.load(path, other(model))


def test_not_a_session_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a locret session file"):
        Session.load(path, tiny_locret("llama"))


class CharTokenizer:
    """One token per character (ids 3..96), enough to check what text becomes."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [3 + ord(c) % 94 for c in text]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(chr(int(i)) for i in ids)

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        turns = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return "<s>" + turns + ("<assistant>" if add_generation_prompt else "")


def test_text_is_tokenized_and_questions_follow_the_template():
    model, tokenizer = tiny_locret("llama"), CharTokenizer()
    prefix, template = chat_prompt_parts(tokenizer, system="Be brief.")
    assert prefix == "<s><system>Be brief.</system><user>"
    assert template == "\n\n{question}</user><assistant>"
    session = Session(model, make_config(), tokenizer=tokenizer, question_template=template)
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    for piece in (prefix, text[:40], text[40:]):
        session.feed(piece)
    whole = torch.tensor([tokenizer.encode(prefix + text)])
    assert_same_state(session, fed(model, make_config(), [whole.shape[1]], whole))
    answer = session.ask("Who?", max_new_tokens=NEW_TOKENS)
    question = torch.tensor([tokenizer.encode(template.replace("{question}", "Who?"))])
    expected = locret.generate(
        model, torch.cat([whole, question], dim=1), make_config(), max_new_tokens=NEW_TOKENS
    )
    assert torch.equal(answer.token_ids, expected.new_tokens[0])
    assert answer.text == tokenizer.decode(expected.new_tokens[0])


def test_bad_input_is_refused(tmp_path):
    model, vanilla = tiny_pair("llama")
    with pytest.raises(ValueError, match="no retaining heads"):
        Session(vanilla)
    with pytest.raises(ValueError, match="must contain"):
        Session(model, question_template="Q:")
    session = Session(model, make_config())
    with pytest.raises(ValueError, match="tokenizer"):
        session.feed("text")
    with pytest.raises(ValueError, match="integer token ids"):
        session.feed(torch.zeros(4))
    with pytest.raises(ValueError, match="one sequence"):
        session.feed(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="session's config"):
        session.ask([3], config=make_config())
