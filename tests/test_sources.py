"""Corpora of many files: folders walked in sorted order (--glob, hidden files left out), compressed
files read decompressed, each file's lines ending in <EOS> as one file's do, and what is refused."""

import bz2
import gzip
import json
import lzma

import numpy as np
import pytest

from rnncli.errors import RnncliError, UsageError
from rnncli.text.data import Corpus
from rnncli.text.encoding import encode_corpus
from rnncli.text.sources import expand_paths
from rnncli.text.tokenizers import WordTokenizer
from tests.conftest import CORPORA, run_cli

TEXTS = {"b/2.txt": "the pear\nsalad was sweet\n", "a.txt": "the apple and\npear", "b/10.txt.gz": "a plum\n\n",
         "c.txt.bz2": "the baker walked\n", "b/d/e.txt.xz": "to the river bank\n"}
OPENERS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def make_folder(root):
    """The files of TEXTS under root (compressed by suffix), a hidden file and folder beside them, and
    the text they make read in order: sorted by path, a newline after a file that lacks one."""
    for name, text in TEXTS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        path.write_bytes(OPENERS.get(path.suffix, bytes)(data))
    (root / ".hidden.txt").write_text("never read\n")
    (root / ".git").mkdir()
    (root / ".git" / "x.txt").write_text("never read\n")
    order = ["a.txt", "b/10.txt.gz", "b/2.txt", "b/d/e.txt.xz", "c.txt.bz2"]
    return order, "".join(t if t.endswith("\n") else t + "\n" for t in (TEXTS[n] for n in order))


def test_a_folder_is_its_files_in_sorted_order_read_as_one_text(tmp_path):
    order, text = make_folder(tmp_path)
    corpus = Corpus(str(tmp_path))
    assert corpus.files == [str(tmp_path / n) for n in order]
    assert corpus.read_text() == text.rstrip("\n") + "\n"  # the last file keeps its own ending
    assert Corpus(str(tmp_path), glob="*.txt").files == [str(tmp_path / n) for n in ("a.txt", "b/2.txt")]
    several = Corpus([str(tmp_path / "b"), str(tmp_path / "a.txt")])  # the paths' order, each folder sorted
    assert several.files == [str(tmp_path / n) for n in ("b/10.txt.gz", "b/2.txt", "b/d/e.txt.xz", "a.txt")]
    assert several.read_text().endswith("to the river bank\nthe apple and\npear")


def test_each_files_last_line_ends_in_eos_as_one_files_do(tmp_path):
    (tmp_path / "1.txt").write_text("the apple")  # no final newline
    (tmp_path / "2.txt").write_text("pear salad\n")
    (tmp_path / "all.txt").write_text("the apple\npear salad\n")
    tok = WordTokenizer.fit(["the apple pear salad"])
    ids = encode_corpus(tok, Corpus([str(tmp_path / "1.txt"), str(tmp_path / "2.txt")]))
    assert np.array_equal(ids, encode_corpus(tok, Corpus(str(tmp_path / "all.txt"))))


def test_refused_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("text\n")
    with pytest.raises(UsageError, match="no such file"):
        expand_paths([str(tmp_path / "a.txt"), str(tmp_path / "nope.txt")])
    with pytest.raises(UsageError, match="standard input"):
        expand_paths(["-", str(tmp_path / "a.txt")])
    with pytest.raises(UsageError, match="no files matching"):
        expand_paths([str(tmp_path)], "*.gz")
    (tmp_path / "empty.txt").write_text("")  # an empty file among others is no text, not an error ...
    assert Corpus(str(tmp_path)).read_text() == "text\n"
    (tmp_path / "a.txt").write_text(" \n")
    with pytest.raises(RnncliError, match="empty"):  # ... but a corpus of no text is
        Corpus(str(tmp_path)).read_text()


def test_a_damaged_compressed_file_is_named(tmp_path):
    data = gzip.compress(("the apple and pear salad\n" * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RnncliError, match=r"cut\.txt\.gz: not a complete gzip file"):
        Corpus(str(tmp_path / "cut.txt.gz")).read_text()
    result = run_cli("tokenize", tmp_path / "cut.txt.gz", "--level", "word")
    assert result.exit_code == 1 and "cut.txt.gz" in result.stderr and "Traceback" not in result.stderr


def test_zstandard_files_need_the_extra_or_say_how_to_get_it(tmp_path, monkeypatch):
    import builtins
    import importlib.util

    path = tmp_path / "a.txt.zst"
    if importlib.util.find_spec("zstandard"):
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(b"the apple\n"))
        assert Corpus(str(path)).read_text() == "the apple\n"
    path.write_bytes(b"\x28\xb5\x2f\xfd")
    real_import = builtins.__import__

    def no_zstandard(name, *args, **kwargs):
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstandard)
    with pytest.raises(UsageError, match=r"pip install 'rnncli\[zstd\]'"):
        Corpus(str(path)).read_text()


TINY = ("--cell", "gru", "--layers", "1", "--hidden", "12", "--embed", "8", "--seq-len", "8", "--batch-size", "2",
        "--max-steps", "3", "--seed", "3", "--json")


def test_training_on_a_folder_of_compressed_files_equals_training_on_their_text(tmp_path):
    """The same model, bit for bit, from the folder as from the one file its text makes; scoring and
    encoding jobs read the folder as that file too."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = (CORPORA / "demo.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    for i in range(4):
        part = "".join(lines[i::4]).encode()
        (folder / f"part-{i}.txt{['', '.gz', '.bz2', '.xz'][i]}").write_bytes(
            [bytes, gzip.compress, bz2.compress, lzma.compress][i](part))
    whole = tmp_path / "whole.txt"
    whole.write_text("".join("".join(lines[i::4]) for i in range(4)), encoding="utf-8")
    for corpus, out in ((folder, "folder.npz"), (whole, "whole.npz")):
        result = run_cli("train", corpus, *TINY, "--out", tmp_path / out)
        assert result.exit_code == 0, result.stderr
    a, b = np.load(tmp_path / "folder.npz"), np.load(tmp_path / "whole.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param."))
    summaries = [run_cli("score", "--model", tmp_path / "whole.npz", "--file", c, "--json") for c in (folder, whole)]
    assert all(r.exit_code == 0 for r in summaries)
    drop = ("corpus", "name", "file")
    first, second = ({k: v for k, v in json.loads(r.stdout).items() if k not in drop} for r in summaries)
    assert first == second and first["sentences"] == len([x for x in lines if x.strip()])
    encoded = [run_cli("tokenize", "--model", tmp_path / "whole.npz", "--encode", c) for c in (folder, whole)]
    assert encoded[0].exit_code == 0 and encoded[0].stdout == encoded[1].stdout


def test_an_output_among_a_folders_files_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("the apple\n")
    (tmp_path / "b.txt").write_text("the pear\n")
    result = run_cli("train", tmp_path, *TINY, "--level", "word", "--out", tmp_path / "b.txt")
    assert result.exit_code == 2 and "is also this command's input" in result.stderr
    assert (tmp_path / "b.txt").read_text() == "the pear\n"


def test_glob_picks_a_folders_files_on_the_command_line(tmp_path):
    make_folder(tmp_path)
    every = json.loads(run_cli("tokenize", tmp_path, "--level", "word", "--json").stdout)
    plain = run_cli("tokenize", tmp_path, "--level", "word", "--glob", "*.txt", "--json")
    assert plain.exit_code == 0, plain.stderr
    assert json.loads(plain.stdout)["lines"] == 4 and every["lines"] == 8  # a.txt, b/2.txt / all five
    refused = run_cli("tokenize", tmp_path, "--glob", "*.csv")
    assert refused.exit_code == 2 and "no files matching --glob '*.csv'" in refused.stderr
