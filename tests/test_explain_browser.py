"""The explain page in a real browser (headless Chromium): every token present in order, the colour
scales and their legends drawn, one gradient line per model, a screenshot that is not blank, and a
20,000-character page that loads whole. Skipped, with the reason, only where no Chromium is installed
(`.ci/run` installs Debian's chromium)."""

import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_explain import PAIR, PEAR, Page

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium to open the page in: install it "
                                                        "(Debian: apt-get install chromium) to run this test")


def browser(tmp_path, page, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a file:// page, offline: no sandbox (root in CI), no GPU, no network calls."""
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", *args, page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, timeout=180)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result


def read_png(path) -> np.ndarray:
    """The pixels of an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes), (height, width, 3)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int32)
    for y in range(height):  # undo each row's filter
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        up = out[y - 1] if y else np.zeros_like(row)
        if kind == 0:
            out[y] = row
        elif kind == 2:
            out[y] = (row + up) & 255
        else:
            for x in range(row.size):
                left = out[y, x - channels] if x >= channels else 0
                upleft = up[x - channels] if x >= channels else 0
                if kind == 1:
                    predicted = left
                elif kind == 3:
                    predicted = (left + up[x]) // 2
                else:  # Paeth
                    p = left + up[x] - upleft
                    pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - upleft)
                    predicted = left if pa <= pb and pa <= pc else up[x] if pb <= pc else upleft
                out[y, x] = (row[x] + predicted) & 255
    return out.reshape(height, width, channels)[:, :, :3]


def test_page_in_the_browser(char_model, word_model, tmp_path):
    page = tmp_path / "page.html"
    result = run_cli("explain", "--model", char_model, PEAR, PAIR, "--compare", word_model, "-o", page)
    assert result.exit_code == 0, result.stderr
    dom = Page(browser(tmp_path, page, "--dump-dom").stdout.decode("utf-8"))
    for text, spans in zip((PEAR, PAIR), dom.passages, strict=True):
        assert "".join(s for s, _ in spans) == text + "↵"  # every token, in order
    assert {"surprise-legend", "units-legend", "gates-legend", "gradient-chart", "gradient-legend"} <= dom.ids
    assert len(dom.lines) == 2  # one line per model

    shot = tmp_path / "shot.png"
    browser(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,1400", "--hide-scrollbars")
    pixels = read_png(shot)
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels.std() > 20  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
    red = (pixels[:, :, 0] - pixels[:, :, 2] > 60).sum()  # surprise (and positive units) drawn in colour
    assert red > 200


def test_a_long_page_loads_whole(char_model, tmp_path):
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 400)[:20_000]
    source, page = tmp_path / "long.txt", tmp_path / "long.html"
    source.write_text(text, encoding="utf-8")
    result = run_cli("explain", "--model", char_model, "--file", source, "-o", page)
    assert result.exit_code == 0, result.stderr
    dom = Page(browser(tmp_path, page, "--dump-dom").stdout.decode("utf-8"))
    assert "".join(s for s, _ in dom.passages[0]).replace("↵", "\n") == text
