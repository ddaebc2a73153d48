"""The token store: a corpus encoded once into a file of ids that train, --resume and score
--continuous read (memory-mapped) instead of encoding again; a changed corpus or tokenizer is
noticed and the store made again, never silently reused."""

import json
import os

import numpy as np
import pytest

from rnncli.errors import RnncliError
from rnncli.text.data import Corpus
from rnncli.text.encoding import encode_corpus
from rnncli.text.store import open_store
from rnncli.training.request import load_model_checkpoint
from tests.conftest import CORPORA, run_cli

TINY = ("--cell", "gru", "--layers", "1", "--hidden", "12", "--embed", "8", "--seq-len", "8", "--batch-size", "2",
        "--seed", "5", "--json")


def corpus_folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    text = (CORPORA / "demo.txt").read_text(encoding="utf-8")
    half = len(text) // 2
    (folder / "a.txt").write_text(text[:half], encoding="utf-8")
    (folder / "b.txt").write_text(text[half:], encoding="utf-8")
    return folder


@pytest.mark.parametrize("level", ["char", "word"])
def test_a_store_holds_the_ids_encoding_gives(tmp_path, level):
    folder = corpus_folder(tmp_path)
    store = tmp_path / "c.tokens"
    result = run_cli("tokenize", folder, "--level", level, "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    kept = open_store(str(store))
    assert kept.ids.dtype == np.uint16 and isinstance(kept.ids, np.memmap)
    assert np.array_equal(kept.ids, encode_corpus(kept.tokenizer, Corpus(str(folder))))
    assert [os.path.basename(f[0]) for f in kept.identity["files"]] == ["a.txt", "b.txt"]
    assert json.loads(result.stdout)["tokens"] == len(kept.ids)


def test_training_from_a_store_is_training_from_the_corpus_and_resumes_from_it(tmp_path):
    """The same model from the store as from the text; the second run and --resume read the store
    (not encoding again: the store file is not rewritten)."""
    folder = corpus_folder(tmp_path)
    store = tmp_path / "c.tokens"
    plain, stored = tmp_path / "plain.npz", tmp_path / "stored.npz"
    assert run_cli("train", folder, *TINY, "--max-steps", "3", "--out", plain).exit_code == 0
    result = run_cli("train", folder, *TINY, "--max-steps", "3", "--store", store, "--out", stored)
    assert result.exit_code == 0, result.stderr
    a, b = np.load(plain), np.load(stored)
    assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param."))
    made = os.stat(store).st_mtime_ns
    result = run_cli("train", folder, *TINY, "--max-steps", "5", "--store", store, "--resume", stored)
    assert result.exit_code == 0, result.stderr
    assert os.stat(store).st_mtime_ns == made and "encoding the corpus again" not in result.stderr
    assert load_model_checkpoint(str(stored)).state["step"] == 5
    scored = run_cli("score", "--model", stored, "--file", folder, "--continuous", "--store", store, "--json")
    plain_score = run_cli("score", "--model", stored, "--file", folder, "--continuous", "--json")
    assert scored.exit_code == 0, scored.stderr
    assert json.loads(scored.stdout)["loss"] == json.loads(plain_score.stdout)["loss"]


def test_a_changed_corpus_or_tokenizer_makes_the_store_again(tmp_path):
    folder = corpus_folder(tmp_path)
    store = tmp_path / "c.tokens"
    assert run_cli("tokenize", folder, "--level", "word", "--store", store).exit_code == 0
    before = len(open_store(str(store)).ids)
    with open(folder / "b.txt", "a", encoding="utf-8") as f:
        f.write("the zyzzyva ate a pear\n")
    result = run_cli("train", folder, *TINY, "--level", "word", "--max-steps", "1", "--store", store,
                     "--out", tmp_path / "m.npz")
    assert result.exit_code == 0, result.stderr
    assert "b.txt was changed since it was stored: encoding the corpus again" in result.stderr
    assert len(open_store(str(store)).ids) == before + 6
    (folder / "c.txt").write_text("one more file\n")
    result = run_cli("tokenize", folder, "--level", "word", "--store", store)
    assert "c.txt was added or removed" in result.stderr
    result = run_cli("tokenize", folder, "--level", "word", "--lowercase", "--store", store)
    assert "a tokenizer of other options" in result.stderr and open_store(str(store)).tokenizer.lowercase


def test_what_a_store_refuses(tmp_path):
    folder = corpus_folder(tmp_path)
    result = run_cli("tokenize", folder, "--store", folder / "a.txt")  # an input is never the store
    assert result.exit_code == 2 and "is also this command's input" in result.stderr
    other = tmp_path / "notes.txt"
    other.write_text("not a store\n")
    result = run_cli("train", folder, *TINY, "--max-steps", "1", "--store", other, "--out", tmp_path / "m.npz")
    assert result.exit_code == 2 and "is not a token store" in result.stderr
    assert other.read_text() == "not a store\n"
    store = tmp_path / "c.tokens"
    assert run_cli("tokenize", folder, "--store", store).exit_code == 0
    data = store.read_bytes()
    store.write_bytes(data[: len(data) - 40])  # a cut trailer
    with pytest.raises(RnncliError, match="not a complete rnncli token store"):
        open_store(str(store))
    result = run_cli("score", "--file", folder, "--store", store, "--model", tmp_path / "nope.npz")
    assert result.exit_code == 2
    from typer.testing import CliRunner

    from rnncli.cli import app

    result = CliRunner().invoke(app, ["tokenize", "-", "--store", str(store)], input="some text\n")
    assert result.exit_code == 2 and "not `-`" in result.stderr
