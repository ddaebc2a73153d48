"""Encoding speed (#34's targets): MB of text per second from files to ids, on all the machine's
cores, at char, word and subword level, against sentencepiece's own encoder on the same lines and
cores for subword (its Python `encode(lines, num_threads=cores)`: the C++ encoder spm_encode runs;
the pip package ships no spm_encode binary).

The corpus: tiny-shakespeare and WikiText-2 (valid, test) repeated to --mb megabytes over several
files, a third of them gzip-compressed, as the 4 GB corpus of `bench/bigcorpus.py` is made.

    python bench/encoding.py [--mb 200]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, write_results

sys.path.insert(0, str(ROOT))
from wordlm import find  # noqa: E402

from rnncli.config import TokenizerConfig  # noqa: E402
from rnncli.execution.plan import machine_cores  # noqa: E402
from rnncli.text.data import Corpus  # noqa: E402
from rnncli.text.encoding import encoded_blocks  # noqa: E402
from rnncli.text.tokenizers import fit_tokenizer  # noqa: E402


def make_corpus(folder: Path, megabytes: float, files: int = 12, compresslevel: int = 6) -> int:
    """`files` files of one text (tiny-shakespeare and WikiText-2 repeated) making about `megabytes`
    MB in all, every third one gzip-compressed. -> the text's size in bytes."""
    source = b"".join(find(name).read_bytes() for name in ("tinyshakespeare.txt", "wikitext2-valid.txt",
                                                             "wikitext2-test.txt"))
    per_file = int(megabytes * (1 << 20)) // files
    text = source * (per_file // len(source) + 1)
    text = text[: text.rfind(b"\n", 0, per_file) + 1]
    packed = gzip.compress(text, compresslevel=compresslevel)
    for i in range(files):
        name, data = (f"part-{i:03d}.txt.gz", packed) if i % 3 == 2 else (f"part-{i:03d}.txt", text)
        (folder / name).write_bytes(data)
    return len(text) * files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    cores = machine_cores()
    results = {"machine": machine(), "cores": cores, "levels": {}}
    with tempfile.TemporaryDirectory(prefix="rnncli-encoding-") as tmp:
        folder = Path(tmp)
        size = make_corpus(folder, args.mb)
        corpus = Corpus(str(folder))
        fit_text = find("tinyshakespeare.txt").read_text(encoding="utf-8") + \
            find("wikitext2-valid.txt").read_text(encoding="utf-8")
        for level in ("char", "word", "subword"):
            tok = fit_tokenizer(TokenizerConfig(level=level, vocab_size=8000), [fit_text])
            start = time.perf_counter()
            tokens = sum(len(ids) for ids in encoded_blocks(tok, corpus))
            seconds = time.perf_counter() - start
            row = {"tokens": tokens, "seconds": round(seconds, 2), "mb_per_s": round(size / seconds / 1e6, 1)}
            if level == "subword":
                lines = [line for block in corpus.blocks() for line in block.split("\n") if line.strip()]
                start = time.perf_counter()
                tok._sp.encode(lines, num_threads=cores)
                own = time.perf_counter() - start
                row["sentencepiece_mb_per_s"] = round(size / own / 1e6, 1)  # its encoding alone, text in memory
                row["vs_sentencepiece"] = round(own / seconds, 3)
            results["levels"][level] = row
            print(level, row, flush=True)
    results["text_bytes"] = size
    print(write_results("encoding", results))


if __name__ == "__main__":
    main()
