"""Fetch the standard benchmark corpora into corpora/downloads/ (git-ignored), with sha256 checks.

    python corpora/download.py        (or: make corpora)

tinyshakespeare.txt    the char-rnn repository's tiny-shakespeare (1.1 MB)
wikitext2-valid.txt    WikiText-2 (raw tokens, `<unk>` marked) validation split
wikitext2-test.txt     WikiText-2 test split

If ../shared/corpora/ (a developer's shared folder) holds a file with the right checksum, it is
copied from there instead of downloaded.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "downloads"
SHARED = HERE.parent.parent / "shared" / "corpora"

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
WIKITEXT_URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"
SHA256 = {
    "tinyshakespeare.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "wikitext2-valid.txt": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "wikitext2-test.txt": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
WIKITEXT_MEMBERS = {"wikitext2-valid.txt": "wikitext-2/wiki.valid.tokens",
                    "wikitext2-test.txt": "wikitext-2/wiki.test.tokens"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URLs
        return response.read()


def place(name: str, data: bytes) -> None:
    if sha256(data) != SHA256[name]:
        raise SystemExit(f"error: {name}: checksum mismatch, not saved")
    (OUT / name).write_bytes(data)
    print(f"{name}: {len(data):,} bytes, sha256 ok")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    missing = []
    for name in SHA256:
        target = OUT / name
        if target.exists() and sha256(target.read_bytes()) == SHA256[name]:
            print(f"{name}: already here")
            continue
        shared = SHARED / name
        if shared.exists() and sha256(shared.read_bytes()) == SHA256[name]:
            shutil.copyfile(shared, target)
            print(f"{name}: copied from {shared}")
            continue
        missing.append(name)
    try:
        if "tinyshakespeare.txt" in missing:
            place("tinyshakespeare.txt", fetch(SHAKESPEARE_URL))
        wiki = [n for n in missing if n in WIKITEXT_MEMBERS]
        if wiki:
            with zipfile.ZipFile(io.BytesIO(fetch(WIKITEXT_URL))) as archive:
                for name in wiki:
                    place(name, archive.read(WIKITEXT_MEMBERS[name]))
    except OSError as err:
        sys.exit(f"error: download failed ({err}); copy the files into {OUT} by hand")


if __name__ == "__main__":
    main()
