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
from rnncli.training.request import load_model_checkpoint
from tests.conftest import CORPORA, run_cli


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
                TokenizerConfig(vocab_size=2), TokenizerConfig(spm_type="wordpiece"), TokenizerConfig(min_count="3"),
                TokenizerConfig(level="word", split="spaces"), TokenizerConfig(level="char", split="whitespace"),
                TokenizerConfig(level="subword", split="whitespace"), TokenizerConfig(level="word", blank_lines="keep"),
                TokenizerConfig(level="char", blank_lines="eos")):
        with pytest.raises(UsageError):
            bad.check()


WIKITEXT_LIKE = (" = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles "
                 "( Japanese : 戦場のヴァルキュリア3 , lit . Valkyria of the Battlefield 3 ) , "
                 "commonly referred to as Valkyria Chronicles III outside "
                 "Japan , is a tactical role @-@ playing video game developed by Sega and Media.Vision for the "
                 "PlayStation Portable . \n\n  \t \n It 's No. 1 at 2 @,@ 500 , and [noise] <SPOKEN_NOISE> "
                 "1089-134686-0000\u00a0end \n last line without an end")


def reference_tokens(text: str) -> list[str]:
    """pytorch/examples' word_language_model (data.py): for each line of the file, its fields
    between whitespace and then <eos>, a blank line included."""
    import io

    return [w for line in io.StringIO(text, newline=None) for w in line.split() + ["<eos>"]]


def test_whitespace_split_with_blank_lines_as_eos_cuts_text_as_pytorch_examples_does():
    """`--split whitespace --blank-lines eos`: every token and every <eos> of the reference's reading
    (no field cut, `<unk>` read as <UNK>), and fitting keeps every field whole, however long."""
    tok = WordTokenizer.fit([WIKITEXT_LIKE + "\n"], split="whitespace", blank_lines="eos")
    expected = reference_tokens(WIKITEXT_LIKE)
    got = [tok.vocab[i] for i in tok.encode(WIKITEXT_LIKE)]
    assert got == [{"<eos>": "<EOS>", "<unk>": "<UNK>"}.get(w, w) for w in expected]
    assert {"@-@", "No.", "[noise]", "<SPOKEN_NOISE>", "1089-134686-0000", "Media.Vision"} <= set(tok.vocab)
    assert tok.encode(WIKITEXT_LIKE + "\n").tolist() == tok.encode(WIKITEXT_LIKE).tolist()  # a last line end ends it
    assert [tok.vocab[i] for i in tok.encode("a\n\n\nzz\n")] == ["a", "<EOS>", "<EOS>", "<EOS>", "<UNK>", "<EOS>"]
    long = "x" * 500
    assert long in WordTokenizer.fit([long + "\n"], split="whitespace").vocab
    assert tok.decode(tok.encode("It 's No. 1 .")) == "It 's No. 1 .\n"  # fields joined by one space
    words = WordTokenizer.fit([WIKITEXT_LIKE + "\n"])  # rnncli's own rule: words and marks apart, blank lines skipped
    assert "@-@" not in words.vocab and words.encode("a\n\nb").tolist().count(EOS) == 2


def test_blank_lines_as_eos_for_subwords():
    text = "\n".join(f"the apple and pear salad {i} is sweet" for i in range(100))
    skip = SubwordTokenizer.fit([text], vocab_size=30)
    eos = SubwordTokenizer.fit([text], vocab_size=30, blank_lines="eos")
    assert skip.encode("the apple\n\n\nthe pear").tolist().count(EOS) == 2
    assert eos.encode("the apple\n\n\nthe pear").tolist().count(EOS) == 4
    assert tokenizer_from_arrays(eos.to_arrays()).encode("a\n\nb").tolist() == eos.encode("a\n\nb").tolist()


@pytest.mark.parametrize("split, blank_lines", [("whitespace", "eos"), ("words", "eos"), ("whitespace", "skip")])
def test_the_tokenization_rule_is_kept_with_the_tokenizer(tmp_path, split, blank_lines):
    """Saved and loaded (a tokenizer file, a checkpoint), a tokenizer cuts text as it did; a file
    saved before the choice existed reads as rnncli's rule with blank lines skipped."""
    tok = fit_tokenizer(TokenizerConfig(level="word", split=split, blank_lines=blank_lines), [WIKITEXT_LIKE])
    save_tokenizer(str(tmp_path / "t.npz"), tok)
    again = load_tokenizer(str(tmp_path / "t.npz"))
    assert again.encode(WIKITEXT_LIKE).tolist() == tok.encode(WIKITEXT_LIKE).tolist()
    assert again.config() == TokenizerConfig(level="word", split=split, blank_lines=blank_lines)
    old = {k: v for k, v in tok.to_arrays().items() if k not in ("split", "blank_lines")}
    assert tokenizer_from_arrays(old).config() == TokenizerConfig(level="word")
    with pytest.raises(RnncliError, match="damaged"):
        tokenizer_from_arrays({**tok.to_arrays(), "split": np.array("commas")})


def test_tokenize_takes_the_rule_and_refuses_it_where_it_does_not_apply(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(WIKITEXT_LIKE + "\n", encoding="utf-8")
    saved = tmp_path / "tok.npz"
    result = run_cli("tokenize", corpus, "--level", "word", "--split", "whitespace", "--blank-lines", "eos",
                     "--save", saved)
    assert result.exit_code == 0, result.stderr
    assert load_tokenizer(str(saved)).config().split == "whitespace"
    refused = run_cli("tokenize", corpus, "--split", "whitespace")
    assert refused.exit_code == 2 and "word level" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_cli("tokenize", corpus, "--level", "word", "--blank-lines", "maybe")
    assert refused.exit_code == 2 and "skip, eos" in refused.stderr


def test_train_with_a_frozen_vocabulary(tmp_path):
    """`train --vocab FILE` trains on another corpus with exactly that vocabulary (a tokenize --save
    file or a checkpoint's), its words unseen there as <UNK>; options that would change it are refused."""
    saved = tmp_path / "vocab.npz"
    result = run_cli("tokenize", CORPORA / "demo.txt", "--level", "word", "--max-vocab", "40", "--save", saved)
    assert result.exit_code == 0, result.stderr
    other = tmp_path / "other.txt"
    other.write_text("the zyzzyva and the apple\n" * 200 + "a quokka ate the pear\n" * 200, encoding="utf-8")
    tiny = ("--layers", "1", "--hidden", "8", "--embed", "6", "--seq-len", "8", "--batch-size", "2", "--max-steps",
            "2", "--json")
    for vocab, out in ((saved, "a.npz"), (tmp_path / "a.npz", "b.npz")):  # a file, then a checkpoint
        result = run_cli("train", other, "--vocab", vocab, *tiny, "--out", tmp_path / out)
        assert result.exit_code == 0, result.stderr
        ck = load_model_checkpoint(str(tmp_path / out))
        assert ck.tokenizer.vocab == load_tokenizer(str(saved)).vocab and ck.model.vocab_size == 40
        assert ck.tokenizer.encode("zyzzyva")[0] == UNK
    for extra in (["--level", "char"], ["--max-vocab", "10"], ["--init-from", tmp_path / "a.npz"]):
        result = run_cli("train", other, "--vocab", saved, *tiny, *extra, "--out", tmp_path / "c.npz")
        assert result.exit_code == 2 and "--vocab" in result.stderr and not (tmp_path / "c.npz").exists()
    result = run_cli("train", other, "--vocab", other, *tiny, "--out", tmp_path / "c.npz")
    assert result.exit_code == 1 and "other.txt" in result.stderr and "Traceback" not in result.stderr
