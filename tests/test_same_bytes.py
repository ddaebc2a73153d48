"""The same bytes whoever does the work: `score --file`, `rescore`, `tokenize --encode`, `sample -n`
and `explain --json` print identical output in one process, with `--workers 2`, with BLAS on one
thread or two, and under every OpenBLAS kernel family this CPU can run (OPENBLAS_CORETYPE: the
Haswell kernels an AVX2 machine gets, SkylakeX on AVX-512, Zen). A row's numbers come from
rnncli's own kernel alone (kernels/packed.py: every number one chain of fused multiply-adds in k
order), never from a BLAS, whose rounding of a row depends on the rows sharing its call and on its
kernels.

Each command runs as a process of its own: OpenBLAS reads its kernel family and thread count when
it loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPORA, ROOT, run_cli


def kernel_families() -> list[str]:
    """The OpenBLAS kernel families this CPU can execute, of Haswell, SkylakeX and Zen."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return []
    families = ["Haswell", "Zen"] if {"avx2", "fma"} <= flags else []
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        families.append("SkylakeX")
    return families


# A machine whose environment pins OpenBLAS's kernels (some processors need it: an older build
# computes wrong results or crashes with its own choice there) keeps them: no other family is tried.
PINNED = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
FAMILIES = [] if PINNED else kernel_families()


def rnncli(*args, env: dict | None = None) -> str:
    """Run `python -m rnncli ARGS` as its own process with `env` added; its stdout."""
    full = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    full.update(env or {})
    done = subprocess.run([sys.executable, "-m", "rnncli", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def lstm_model(tmp_path_factory) -> Path:
    """A char-level 2 x 256 lstm, two training steps: its recurrent matrices (1 MB) are large enough
    for a few samples to share their products with the helper on the second core."""
    out = tmp_path_factory.mktemp("same-bytes") / "lstm.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", "lstm", "--layers", "2", "--hidden", "256",
                     "--seq-len", "32", "--batch-size", "16", "--max-steps", "2", "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("same-bytes") / "text.txt"
    path.write_text(CORPORA.joinpath("demo.txt").read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return path


def commands(model: Path, text: Path) -> dict[str, tuple]:
    m = ("--model", model)
    return {
        "score --file --per-line": ("score", *m, "--file", text, "--per-line", "--shard-lines", "100"),
        "rescore": ("rescore", *m, CORPORA / "nbest.txt"),
        "tokenize --encode": ("tokenize", *m, "--encode", text, "--shard-lines", "100"),
        "sample -n 3": ("sample", *m, "-n", "3", "--length", "150", "--seed", "3", "--json"),
        "sample -n 9": ("sample", *m, "-n", "9", "--length", "40", "--seed", "4", "--json"),
        "explain --json": ("explain", *m, "The apple and pear salad was sweet.", "--json", "--steps", "20"),
    }


@pytest.fixture(scope="module")
def reference(lstm_model, text) -> dict[str, str]:
    """Each command's output in one process, BLAS on its own threads, OpenBLAS's own kernel choice."""
    return {name: rnncli(*args) for name, args in commands(lstm_model, text).items()}


def test_the_outputs_are_not_empty(reference):
    assert all(out.strip() for out in reference.values())


@pytest.mark.parametrize("env", [{"OPENBLAS_NUM_THREADS": "1"}, {"OPENBLAS_NUM_THREADS": "2"}],
                         ids=["1-blas-thread", "2-blas-threads"])
def test_the_thread_count_changes_no_byte(lstm_model, text, reference, env):
    for name, args in commands(lstm_model, text).items():
        assert rnncli(*args, env=env) == reference[name], name


@pytest.mark.parametrize("family", FAMILIES)
def test_every_kernel_family_gives_the_same_bytes(lstm_model, text, reference, family):
    for name, args in commands(lstm_model, text).items():
        assert rnncli(*args, env={"OPENBLAS_CORETYPE": family}) == reference[name], (name, family)


def test_workers_give_the_same_bytes(lstm_model, text, reference):
    for name, args in commands(lstm_model, text).items():
        if args[0] in ("rescore", "explain"):
            continue  # no --workers
        assert rnncli(*args, "--workers", "2") == reference[name], name


def test_this_machine_runs_a_kernel_family():
    """On x86-64 with AVX2 at least the Haswell and Zen families run; elsewhere (ARM) there is no
    family to compare and the test says so."""
    if PINNED:
        pytest.skip(f"this machine pins OpenBLAS's kernels ({PINNED}): no other family is run here")
    if not FAMILIES:
        pytest.skip("no OpenBLAS x86 kernel family to compare on this CPU")
    assert "Haswell" in FAMILIES


@pytest.fixture(scope="module")
def int8_model(lstm_model, tmp_path_factory) -> Path:
    """The lstm quantized with int8 steps (kernels/int8.py): generation in int8 activations."""
    out = tmp_path_factory.mktemp("same-bytes") / "lstm-int8.npz"
    result = run_cli("quantize", lstm_model, "-o", out, "--activations", "int8")
    assert result.exit_code == 0, result.stderr
    return out


def int8_commands(model: Path) -> dict[str, tuple]:
    m = ("--model", model)
    return {"sample": ("sample", *m, "--length", "2500", "--seed", "5"),  # long enough for the helper
            "sample -n 3": ("sample", *m, "-n", "3", "--length", "150", "--seed", "3", "--json"),
            "sample -n 9": ("sample", *m, "-n", "9", "--length", "40", "--seed", "4", "--json"),
            "beam": ("sample", *m, "--beam", "5", "--length", "30")}


def test_int8_steps_give_the_same_bytes_on_any_cpu(int8_model):
    """AVX-512 VNNI's byte dot products where this CPU has them, against the exact float sums an AVX2
    CPU runs (NUMBA_CPU_NAME=haswell: kernels compiled for it), and against one BLAS thread."""
    for name, args in int8_commands(int8_model).items():
        here = rnncli(*args)
        assert here.strip(), name
        assert rnncli(*args, env={"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell"}) == here, name
        assert rnncli(*args, env={"OPENBLAS_NUM_THREADS": "1"}) == here, name
        if "-n" in args:
            assert rnncli(*args, "--workers", "2") == here, name


@pytest.fixture(scope="module")
def adaptive_model(tmp_path_factory) -> Path:
    """A word lstm whose output layer is an adaptive softmax (models/adaptive.py): a head and two tails."""
    out = tmp_path_factory.mktemp("same-bytes") / "adaptive.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--level", "word", "--softmax", "adaptive", "--cutoffs", "20,60",
                     "--div-value", "2", "--hidden", "64", "--embed", "32", "--seq-len", "20", "--batch-size", "16",
                     "--max-steps", "3", "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


def test_an_adaptive_softmax_gives_the_same_bytes_however_it_runs(adaptive_model, text):
    """Its scores and samples with --workers 2, one BLAS thread, each OpenBLAS family, and the
    kernels compiled for an AVX2 CPU."""
    m = ("--model", adaptive_model)
    runs = {"score --file --per-line": ("score", *m, "--file", text, "--per-line", "--shard-lines", "100"),
            "sample -n 3": ("sample", *m, "-n", "3", "--length", "60", "--seed", "3", "--json"),
            "beam": ("sample", *m, "--beam", "4", "--length", "15", "--prime", "the")}
    for name, args in runs.items():
        here = rnncli(*args)
        assert here.strip(), name
        assert rnncli(*args, env={"OPENBLAS_NUM_THREADS": "1"}) == here, name
        assert rnncli(*args, env={"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell"}) == here, name
        for family in FAMILIES:
            assert rnncli(*args, env={"OPENBLAS_CORETYPE": family}) == here, (name, family)
        if name != "beam":
            assert rnncli(*args, "--workers", "2") == here, name
