"""Jobs on a Ray cluster: a local one started on 127.0.0.1 for these tests (`ray start --head`) and
stopped after them. The output equals one process's; a worker killed with SIGKILL mid-job costs only
its shard, which is retried; an interrupted job resumes. rnncli runs as its own process, as a user runs
it, so that each job is a fresh Ray driver."""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import CORPORA, run_cli

pytest.importorskip("ray", reason="Ray is not installed (it comes with the dev extras: pip install -e '.[dev]')")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    token = subprocess.run([*ray, "get-auth-token", "--generate"], capture_output=True, text=True, timeout=120)
    assert token.returncode == 0, token.stderr[-2000:]  # the cluster and its drivers share ~/.ray/auth_token
    started = subprocess.run([*ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              f"--temp-dir={temp}", "--num-cpus=2", "--include-dashboard=false",
                              "--disable-usage-stats"], capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True, timeout=120)


def rnncli(*args, env=None) -> subprocess.CompletedProcess:
    """rnncli as a driver of the test cluster, with its token (~/.ray/auth_token)."""
    return subprocess.run([sys.executable, "-m", "rnncli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "RAY_AUTH_MODE": "token", **(env or {})})


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "text.txt"
    path.write_text((CORPORA / "demo.txt").read_text(encoding="utf-8") * 2, encoding="utf-8")
    return path


def assert_ray_gives_one_process_output(cluster, model, *commands) -> None:
    for args in commands:
        here = run_cli(*args, "--model", model)
        assert here.exit_code == 0, here.stderr
        there = rnncli(*args, "--model", model, "--ray", cluster)
        assert there.returncode == 0, there.stderr[-2000:]
        assert there.stdout == here.stdout, args


def test_ray_gives_one_process_output(cluster, char_model, text, tmp_path):
    assert_ray_gives_one_process_output(cluster, char_model,
                                        ("score", "--file", text, "--per-line", "--shard-lines", "150"),
                                        ("tokenize", "--encode", text, "--shard-lines", "400"),
                                        ("sample", "-n", "80", "--length", "20", "--seed", "5"))
    out = tmp_path / "summary.txt"
    there = rnncli("score", "--file", text, "--model", char_model, "--ray", cluster, "--shard-lines", "100")
    assert there.stdout == run_cli("score", "--file", text, "--model", char_model, "--shard-lines", "100").stdout
    assert not out.exists()


def test_ray_runs_a_quantized_model_as_one_process_does(cluster, char_model, text, tmp_path):
    quantized = tmp_path / "int8.npz"
    assert run_cli("quantize", char_model, "-o", quantized, "--activations", "int8").exit_code == 0
    assert_ray_gives_one_process_output(cluster, quantized,
                                        ("score", "--file", text, "--per-line", "--shard-lines", "150"),
                                        ("sample", "-n", "80", "--length", "20", "--seed", "5"))


def test_a_killed_worker_costs_only_its_shard(cluster, char_model, text, tmp_path):
    marker = tmp_path / "killed"
    out = tmp_path / "scores.tsv"
    result = rnncli("score", "--file", text, "--per-line", "--shard-lines", "100", "--model", char_model,
                    "--ray", cluster, "-o", out, env={"RNNCLI_FAULTS": f"kill:3:{marker}"})
    assert result.returncode == 0, result.stderr[-2000:]
    pid = int(marker.read_text())  # the worker that ran shard 3 the first time killed itself with SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    expected = run_cli("score", "--file", text, "--per-line", "--model", char_model).stdout
    assert out.read_text() == expected


def test_an_interrupted_ray_job_resumes(cluster, char_model, text, tmp_path):
    out = tmp_path / "ids.txt"
    args = ("tokenize", "--encode", text, "--shard-lines", "200", "--model", char_model, "--ray", cluster, "-o", out)
    failed = rnncli(*args, env={"RNNCLI_FAULTS": "fail:1"})
    assert failed.returncode == 1 and "shard 1 (lines 201-400) failed 3 times" in failed.stderr
    assert not out.exists() and (tmp_path / "ids.txt.parts" / "manifest.json").exists()
    resumed = rnncli(*args, "--resume", env={"RNNCLI_FAULTS": "fail:0"})  # shard 0 is not run again
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert out.read_text() == run_cli("tokenize", "--encode", text, "--model", char_model).stdout
