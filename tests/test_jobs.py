"""Jobs in shards on this machine: `score --file`, `rescore`, `tokenize --encode` and `sample -n` give the
same output on one process and on several (--workers), a filter keeps exactly the lines it should, an
interrupted job resumes from its parts, and a failed shard is reported with its lines."""

import json
import math
import sys

import pytest

from tests.conftest import CORPORA, run_cli

DEMO = CORPORA / "demo.txt"


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def long_text(tmp_path_factory):
    """The demo corpus three times, with blank lines: ~1,800 lines."""
    path = tmp_path_factory.mktemp("jobs") / "long.txt"
    text = DEMO.read_text(encoding="utf-8")
    path.write_text(text + "\n\n" + text + "\n" + text, encoding="utf-8")
    return path


def test_per_line_scores_are_the_sentences_scores(word_model, tmp_path):
    path = tmp_path / "three.txt"
    sentences = ["The apple and pear salad was sweet.", "", "We ate the zyzzyva.", "The cook made jam."]
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    rows = [line.split("\t") for line in ok(run_cli("score", "--model", word_model, "--file", path,
                                                    "--per-line")).splitlines()]
    assert [int(r[0]) for r in rows] == [1, 3, 4]  # ids are line numbers; the blank line is skipped
    scored = {r["text"]: r for r in json.loads(ok(run_cli("score", "--model", word_model, "--json",
                                                          *[s for s in sentences if s])))}
    for row, text in zip(rows, [s for s in sentences if s], strict=True):
        assert float(row[1]) == pytest.approx(scored[text]["logprob"], abs=1e-5)
        assert int(row[2]) == scored[text]["tokens"]
        assert float(row[3]) == pytest.approx(scored[text]["perplexity"], rel=1e-4)
    records = [json.loads(x) for x in ok(run_cli("score", "--model", word_model, "--file", path, "--per-line",
                                                 "--format", "jsonl", "--bits")).splitlines()]
    assert records[0]["logprob"] == pytest.approx(float(rows[0][1]) / math.log(2), abs=1e-5)


def test_workers_give_the_same_bytes(char_model, long_text, tmp_path):
    for args in (("score", "--file", long_text, "--per-line"),
                 ("score", "--file", long_text),
                 ("tokenize", "--encode", long_text),
                 ("sample", "-n", "70", "--length", "30", "--seed", "3")):
        model = ("--model", char_model)
        one = ok(run_cli(*args, *model, "--shard-lines", "200") if args[0] != "sample" else run_cli(*args, *model))
        two = ok(run_cli(*args, *model, "--workers", "2", "--shard-lines", "200") if args[0] != "sample"
                 else run_cli(*args, *model, "--workers", "2"))
        assert one == two, args
        if args[0] == "tokenize":
            assert len(one.splitlines()) == len(long_text.read_text(encoding="utf-8").splitlines())
    samples = ok(run_cli("sample", "--model", char_model, "-n", "70", "--length", "30", "--seed", "3", "--json"))
    assert len({json.loads(x)["text"] for x in samples.splitlines()}) == 70


def test_keep_below_and_above_filter_by_perplexity(char_model, long_text):
    rows = [line.split("\t") for line in ok(run_cli("score", "--model", char_model, "--file", long_text,
                                                    "--per-line")).splitlines()]
    lines = long_text.read_text(encoding="utf-8").split("\n")
    ppl = sorted({float(r[3]) for r in rows})
    # thresholds halfway between two printed values: no line sits on one (repeated lines share a value)
    q1, q3 = len(ppl) // 4, 3 * len(ppl) // 4
    low, high = (ppl[q1] + ppl[q1 + 1]) / 2, (ppl[q3] + ppl[q3 + 1]) / 2
    result = run_cli("score", "--model", char_model, "--file", long_text, "--keep-below", str(high),
                     "--keep-above", str(low))
    expected = [lines[int(r[0]) - 1] for r in rows if low < float(r[3]) < high]
    assert ok(result).splitlines() == expected
    assert f"kept {len(expected):,} of {len(rows):,} lines" in result.stderr


def test_a_failed_shard_is_named_and_the_job_resumes(char_model, long_text, tmp_path, monkeypatch):
    out = tmp_path / "scores.tsv"
    args = ("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "300", "-o", out)
    monkeypatch.setenv("RNNCLI_FAULTS", "fail:2")
    result = run_cli(*args)
    assert result.exit_code == 1
    assert "shard 2 (lines 601-900) failed 3 times" in result.stderr and "--resume" in result.stderr
    assert not out.exists()  # nothing half-written: the parts wait beside it
    manifest = json.loads((tmp_path / "scores.tsv.parts" / "manifest.json").read_text())
    assert sorted(map(int, manifest["parts"])) == [0, 1, 3, 4, 5, 6]
    again = run_cli(*args)
    assert again.exit_code == 2 and "--resume" in again.stderr
    monkeypatch.setenv("RNNCLI_FAULTS", "fail:0")  # shard 0 is done: a resumed job does not run it again
    ok(run_cli(*args, "--resume"))
    monkeypatch.delenv("RNNCLI_FAULTS")
    assert out.read_text() == ok(run_cli(*args[:-2]))
    assert not (tmp_path / "scores.tsv.parts").exists()
    other = run_cli("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "100",
                    "-o", out, "--resume")
    assert other.exit_code == 0  # no parts left: --resume simply runs the job


def test_bad_lines_are_counted_and_named_and_keep_their_lines(char_model, tmp_path):
    path = tmp_path / "nbest.txt"
    path.write_text("a-1 the apple\na-2\tbad\tnot-a-cost\nb-1 the pear\nb-2\tx\t1\t2\t3\n", encoding="utf-8")
    result = run_cli("rescore", path, "--model", char_model, "--workers", "2", "--shard-lines", "1")
    assert result.exit_code == 1
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["a-1", "a-2", "b-1", "b-2"]
    assert "2 bad lines each given the cost 1e+30" in result.stderr and "line 2:" in result.stderr
    assert "line 4:" in result.stderr


def test_a_bad_byte_deep_in_a_large_file_costs_one_line(char_model, long_text, tmp_path):
    good = long_text.read_bytes()
    assert len(good) > 70_000  # past the start every command checks as a whole
    path = tmp_path / "crawl.txt"
    path.write_bytes(good + b"caf\xe9 latin-1\n" + b"a NUL \x00 here\n" + good[:2000])
    result = run_cli("score", "--model", char_model, "--file", path, "--per-line")
    assert result.exit_code == 1
    bad = good.count(b"\n") + 1
    assert "2 bad lines left out" in result.stderr and f"line {bad}:" in result.stderr
    ids = [int(line.split("\t")[0]) for line in result.stdout.splitlines()]
    lines = len(path.read_bytes().rstrip(b"\n").split(b"\n"))
    assert bad not in ids and bad + 1 not in ids and ids[-1] == lines
    encoded = run_cli("tokenize", "--model", char_model, "--encode", path)
    assert encoded.exit_code == 1 and len(encoded.stdout.splitlines()) == ids[-1]  # lines keep their numbers


@pytest.mark.parametrize("args, message", [
    (["score", "--file", DEMO, "--resume"], "--resume finishes a job that writes a file"),
    (["score", "--file", DEMO, "--per-line", "--workers", "0"], "--workers must be at least 1"),
    (["score", "--file", DEMO, "-o", "x.txt"], "-o writes the lines"),
    (["score", "the apple", "--workers", "2"], "apply to --file"),
    (["score", "--file", DEMO, "--per-line", "--workers", "2", "--ray", "auto"], "not both"),
    (["score", "--file", DEMO, "--keep-below", "2", "--keep-above", "3"], "--keep-above must be below"),
    (["sample", "--workers", "2"], "apply to several samples"),
    (["tokenize", DEMO, "--workers", "2"], "apply to --encode"),
])
def test_job_option_mistakes(char_model, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(*args, "--model", char_model)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_ray_missing_says_how_to_install(char_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = run_cli("score", "--model", char_model, "--file", DEMO, "--per-line", "--ray", "auto")
    assert result.exit_code == 2 and "pip install 'rnncli[ray]'" in result.stderr


def test_progress_off_a_terminal_is_plain_lines(char_model, long_text, monkeypatch):
    from rnncli.cli.jobs import JobDisplay

    monkeypatch.setattr(JobDisplay, "PLAIN_EVERY", 0.0)  # a line at every part instead of every 10 s
    result = run_cli("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "500")
    progress = [line for line in result.stderr.splitlines() if " shards, " in line]
    assert len(progress) == 4 and progress[-1].startswith("4 shards, ") and "lines/s" in progress[-1]
    assert "\x1b" not in result.stderr  # no terminal codes
    quiet = run_cli("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "500", "-q")
    assert quiet.stderr == ""


def test_a_ctrl_c_whose_exception_is_lost_still_stops_the_job(char_model, long_text, tmp_path, monkeypatch):
    """SIGINT during shard 2, its KeyboardInterrupt swallowed where it was raised (as was seen now and
    then with the default handler): the job stops at the next shard, says so, exits 130, keeps its
    parts for --resume and writes no output."""
    import os
    import signal

    import rnncli.jobs.shards as shards

    real = shards.run_shard

    def run_shard(task, shard, path):
        if shard.index == 2:
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass  # lost on the way
        return real(task, shard, path)

    monkeypatch.setattr(shards, "run_shard", run_shard)
    out = tmp_path / "scores.tsv"
    before = signal.getsignal(signal.SIGINT)  # Python's default handler, or SIG_IGN in a shell's background job
    result = run_cli("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "300",
                     "-o", out)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not out.exists()
    manifest = json.loads((tmp_path / "scores.tsv.parts" / "manifest.json").read_text())
    assert sorted(map(int, manifest["parts"])) == [0, 1, 2]  # stopped once shard 2, running then, was done
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    monkeypatch.setattr(shards, "run_shard", real)
    args = ("score", "--model", char_model, "--file", long_text, "--per-line", "--shard-lines", "300")
    ok(run_cli(*args, "-o", out, "--resume"))
    assert out.read_text() == ok(run_cli(*args))


class _PlanOfTheWorker:
    """A task that reports the engine's plan of the process running its shard."""

    needs = "model"

    def run(self, ck, shard):
        from rnncli.execution.plan import current
        from rnncli.jobs.shards import Part

        return Part(shard.index, shard.first, len(shard.items), f"{current().cores}\n")

    def describe(self) -> dict:
        return {"task": "plan"}


def test_each_worker_is_given_its_share_of_the_cores(monkeypatch):
    """`--workers N`: each worker process runs with the plan it was given (cores / N, at least
    one: execution/plan.py), whatever the BLAS it loads would say."""
    from rnncli.execution import plan
    from rnncli.jobs.shards import CountSource, local_runner

    monkeypatch.setattr(plan, "machine_cores", lambda: 8)  # more than this machine's: what a worker reads is given
    for name in plan.BLAS_THREADS:
        monkeypatch.delenv(name, raising=False)
    for workers, share in ((2, "4"), (3, "2")):
        got = list(local_runner(workers, None)(_PlanOfTheWorker(), CountSource(workers, 1).shards()))
        assert [part.text for _, part, error in got] == [share + "\n"] * workers, got
