import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnncli.config import TokenizerConfig
from rnncli.errors import RnncliError, UsageError
from rnncli.formats.checkpoint import load_tokenizer, save_tokenizer
from rnncli.text.tokenizers import (
    EOS,
    UNK,
    CharTokenizer,
    SubwordTokenizer,
    WordTokenizer,
    fit_tokenizer,
    tokenizer_from_arrays,
)


def test_char_reserved_ids_and_newline_is_eos():
    tok = CharTokenizer.fit(["ab\nba\n"])
    assert tok.vocab[:2] == ["<UNK>", "<EOS>"]
    ids = tok.encode("ab\nz")
    assert ids.dtype == np.int32
    assert ids[2] == EOS and ids[3] == UNK
    assert tok.decode(tok.encode("ab\nba")) == "ab\nba"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_char_round_trip_any_text(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    tok = CharTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text


def test_char_min_count_folds_rare_characters_into_unk():
    tok = CharTokenizer.fit(["aaab\n"], min_count=2)
    assert "b" not in tok.vocab
    assert tok.encode("ab").tolist() == [tok.vocab.index("a"), UNK]


def test_char_non_ascii_round_trip():
    text = "naïve café — 東京 🙂 שלום e\u0301\n"
    tok = CharTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text


def test_word_tokens_punctuation_eos_and_unk():
    tok = WordTokenizer.fit(["The cat sat.\nThe dog, the <unk> ran!\n"])
    ids = tok.encode("The cat ran!\nThe zebra.")
    words = tok.token_texts(ids)
    assert words == ["The", "cat", "ran", "!", "<EOS>", "The", "<UNK>", ".", "<EOS>"]
    assert "<unk>" not in tok.vocab  # the corpus's own marker maps to ours
    assert tok.encode("<unk>").tolist() == [UNK, EOS]


def test_word_counts_min_count_and_max_vocab():
    text = "a a a b b c\n"
    tok = WordTokenizer.fit([text], min_count=2)
    assert tok.vocab == ["<UNK>", "<EOS>", "a", "b"]
    tok = WordTokenizer.fit([text], max_vocab=3)
    assert tok.vocab == ["<UNK>", "<EOS>", "a"]
    assert tok.encode("b c").tolist() == [UNK, UNK, EOS]


def test_word_lowercase_applies_at_encode_time():
    tok = WordTokenizer.fit(["The Cat\n"], lowercase=True)
    assert "the" in tok.vocab and "The" not in tok.vocab
    assert UNK not in tok.encode("THE CAT").tolist()
    cased = WordTokenizer.fit(["The Cat\n"])
    assert cased.encode("the cat").tolist() == [UNK, UNK, EOS]


def test_word_blank_lines_carry_no_eos():
    tok = WordTokenizer.fit(["a b\n\n\nc\n"])
    assert tok.encode("a b\n\n\nc\n").tolist().count(EOS) == 2


def test_word_decode_spacing():
    tok = WordTokenizer.fit(["Hello , world ! ( yes )\n"])
    assert tok.decode(tok.encode("Hello, world! (yes)")) == "Hello, world! (yes)\n"


def test_subword_trains_and_round_trips():
    lines = [f"the apple and pear salad number {i} is sweet" for i in range(200)]
    tok = fit_tokenizer(TokenizerConfig(level="subword", vocab_size=40), ["\n".join(lines)])
    assert tok.vocab[:2] == ["<UNK>", "<EOS>"] and tok.vocab_size == 40
    ids = tok.encode("the apple salad\nis sweet")
    assert ids[-1] == EOS and (ids == EOS).sum() == 2
    assert tok.decode(ids) == "the apple salad\nis sweet\n"


def test_subword_bpe():
    lines = "\n".join(f"banana bandana {i}" for i in range(100))
    tok = SubwordTokenizer.fit([lines], vocab_size=25, spm_type="bpe")
    assert tok.decode(tok.encode("banana")) == "banana\n"


def test_subword_too_small_corpus_suggests_a_size():
    with pytest.raises(UsageError, match=r"largest size that works is \d+"):
        SubwordTokenizer.fit(["tiny corpus\n"], vocab_size=5000)


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_arrays_round_trip_through_npz(tmp_path, level):
    text = "\n".join(f"the apple and pear salad {i} is sweet" for i in range(100))
    tok = fit_tokenizer(TokenizerConfig(level=level, vocab_size=30, lowercase=True), [text])
    arrays = tok.to_arrays()
    assert all(a.dtype != object for a in arrays.values())
    path = tmp_path / "vocab.npz"
    save_tokenizer(str(path), tok)
    again = load_tokenizer(str(path))
    assert again.vocab == tok.vocab and again.level == level
    assert again.encode("the apple salad").tolist() == tok.encode("the apple salad").tolist()


def test_from_arrays_refuses_inconsistent_data():
    with pytest.raises(RnncliError):
        tokenizer_from_arrays({"level": np.array("char"), "vocab": np.array(["a", "b"])})
    with pytest.raises(RnncliError):
        tokenizer_from_arrays({"level": np.array("nope"), "vocab": np.array(["<UNK>", "<EOS>"])})


def test_tokenizer_config_rejects_bad_options():
    for bad in (TokenizerConfig(level="byte"), TokenizerConfig(min_count=0), TokenizerConfig(max_vocab=2),
                TokenizerConfig(vocab_size=2), TokenizerConfig(spm_type="wordpiece"), TokenizerConfig(min_count="3")):
        with pytest.raises(UsageError):
            bad.check()
