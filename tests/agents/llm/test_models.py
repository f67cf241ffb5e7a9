import json
import shutil

import pytest

from palaestra.agents.llm.models import PROTOCOL_TAGS, check_tokenizer, fit_vocabulary, load_model, make_tiny_model


def test_fit_vocabulary_lowercases_splits_and_drops_tags():
    words = fit_vocabulary(["<search> Velmora Labs </search>", "Doc 1(Title: X)"], extra_words=["Paris"])
    assert words == sorted(["velmora", "labs", "doc", "1", "(", "title", ":", "x", ")", "paris"])
    assert not set(words) & set(PROTOCOL_TAGS)


def test_tiny_model_round_trips_through_the_local_loader(tiny_model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tiny_model_dir / name).is_file()
    model, tokenizer = load_model(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert sum(p.numel() for p in model.parameters()) < 500_000
    ids = tokenizer.encode("<search> Varno </search>", add_special_tokens=False)
    assert len(ids) == 3 and tokenizer.unk_token_id not in ids  # tags are single tokens, words lower-cased
    assert tokenizer.decode(ids) == "<search> varno </search>"
    assert json.loads((tiny_model_dir / "config.json").read_text())["model_type"] == "qwen2"


def test_bpe_spells_a_name_it_never_saw_with_known_pieces(tmp_path):
    texts = ["question : what is the capital of varno ? <search> varno capital </search>", "the capital is parith ."]
    model, tokenizer = load_model(make_tiny_model(tmp_path / "bpe", texts * 10, tokenizer="bpe", vocab_size=300))
    ids = tokenizer.encode("<search> Zentrova Labs </search>", add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids and len(ids) > 4  # spelt from bytes: every string has an encoding
    assert tokenizer.decode(ids) == "<search> zentrova labs </search>"
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<search>" and tokenizer.convert_ids_to_tokens(ids)[-1] == "</search>"
    seen = tokenizer.encode(" varno", add_special_tokens=False)
    assert len(seen) == 1  # a word of the texts became one merged token
    assert model.config.vocab_size == len(tokenizer) <= 300 + len(PROTOCOL_TAGS)
    check_tokenizer(tokenizer)


def test_unknown_tokenizer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        make_tiny_model(tmp_path, ["x"], tokenizer="sentencepiece")


def test_load_model_errors(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_model(tmp_path)
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_model_dir / "config.json", no_tokenizer)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model(no_tokenizer)


def test_tokenizer_without_tags_is_rejected(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "<pad>": 1, "x": 2}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>")
    with pytest.raises(ValueError, match="</search>"):
        check_tokenizer(tokenizer)
    directory = make_tiny_model(tmp_path / "m", ["x"])
    tokenizer.save_pretrained(directory)  # replace the tokenizer by one without tags
    with pytest.raises(ValueError, match="cannot write the tag"):
        load_model(directory)


def test_make_tiny_model_validates_shapes(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        make_tiny_model(tmp_path, ["x"], hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="empty"):
        make_tiny_model(tmp_path, [])
