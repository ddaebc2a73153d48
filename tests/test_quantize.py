"""Eight-bit weights (formats/int8.py, `rnncli quantize`): the rule's exactness, checked against
float64; every cell's and task's weights covered, walked from the registries; a quantized model
runs every command exactly as its dequantized float model does; hostile scales are refused."""

import json

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.formats import int8
from rnncli.formats.checkpoint import NpzReader, atomic_save_npz, save_checkpoint
from rnncli.kernels.cells import CELL_NAMES
from rnncli.kernels.quantization import round_scale
from rnncli.tasks import TASKS, get_task, load_model_checkpoint
from tests.conftest import CORPORA, run_cli


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("scheme", int8.SCHEMES)
@pytest.mark.parametrize("shape", [(512, 2048), (70, 33), (1, 5), (200, 65)])
def test_the_rule_is_exact_in_float32_and_idempotent(scheme, shape):
    rng = np.random.default_rng(sum(shape))
    W = (rng.standard_t(3, size=shape) * 0.05).astype(np.float32)
    W[:, 0] = 0.0  # an all-zero column: its scale is 1, its q 0
    q, s = int8.quantize(W, scheme)
    starts = int8.group_starts(shape[0], scheme)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    assert s.shape == (len(starts) - 1, shape[1]) and (s > 0).all() and np.isfinite(s).all()
    assert np.array_equal(round_scale(s), s)  # 16 significant bits
    per_row = np.repeat(s.astype(np.float64), np.diff(starts), axis=0)
    exact = q.astype(np.float64) * per_row  # float64: the exact products
    W_prime = int8.dequantize(q, s, scheme)
    assert W_prime.dtype == np.float32 and np.array_equal(W_prime.astype(np.float64), exact)
    assert (np.abs(W_prime.astype(np.float64) - W) <= per_row / 2 * (1 + 1e-6)).all()  # round to nearest
    nonzero = np.abs(W).max(axis=0) > 0
    group_max = np.maximum.reduceat(np.abs(q.astype(int)), starts[:-1], axis=0)
    assert (group_max[:, nonzero] == 127).all()  # each nonzero column's groups use the whole range
    q2, s2 = int8.quantize(W_prime, scheme)  # saving a loaded quantized model loses nothing
    assert np.array_equal(q2, q) and np.array_equal(s2, s)


def test_block32_groups_are_32_weights_along_the_inputs():
    assert int8.group_starts(70, "block32").tolist() == [0, 32, 64, 70]
    assert int8.group_starts(70, "row").tolist() == [0, 70]
    assert int8.scales_shape("layers.0.Wh", (70, 12), "block32") == (3, 12)
    assert int8.scales_shape("embed.weight", (9, 70), "block32") == (9, 3)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_cell_and_task_has_its_matrices_and_embeddings_covered(cell, task, tmp_path):
    t = get_task(task)
    config = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=40, layers=2, task=task,
                         labels=["a", "b"] if t.labelled else [], bidirectional=t.bidirectional and task != "tag")
    model = t.build(config)
    params = model.init_params(np.random.default_rng(0), np.float32)
    pairs = int8.quantize_params(params, "block32")
    for name, value in params.items():
        matrix = value.ndim == 2 and (name.rsplit(".", 1)[-1] in ("Wx", "Wh", "W") or name.endswith("embed.weight"))
        assert (name in pairs) == matrix, name


@pytest.fixture(scope="module")
def quantized_lm(tmp_path_factory):
    """A word LSTM trained briefly, quantized by both schemes (float32 activations), and a float
    checkpoint of the dequantized weights of each (the same model in float32, by the format's claim);
    and `int8.npz`, row scales with int8 steps (generation in int8 activations)."""
    folder = tmp_path_factory.mktemp("quantized")
    ok(run_cli("train", CORPORA / "demo.txt", "--level", "word", "--cell", "lstm", "--layers", "2", "--hidden", "40",
               "--embed", "24", "--epochs", "2", "--seq-len", "20", "--batch-size", "16",
               "--out", folder / "float.npz"))
    for scheme in int8.SCHEMES:
        record = json.loads(ok(run_cli("quantize", folder / "float.npz", "-o", folder / f"{scheme}.npz", "--scheme",
                                       scheme, "--activations", "float32", "--eval", CORPORA / "demo.txt",
                                       "--json")).stdout)
        (folder / f"{scheme}.json").write_text(json.dumps(record))
        ck = load_model_checkpoint(str(folder / f"{scheme}.npz"), training_state=False)
        ck.quantization = None
        save_checkpoint(str(folder / f"{scheme}-dequantized.npz"), ck)
    record = json.loads(ok(run_cli("quantize", folder / "float.npz", "-o", folder / "int8.npz", "--activations", "int8",
                                   "--eval", CORPORA / "demo.txt", "--json")).stdout)
    (folder / "int8.json").write_text(json.dumps(record))
    return folder


def test_quantize_reports_size_and_quality(quantized_lm):
    for scheme in int8.SCHEMES:
        record = json.loads((quantized_lm / f"{scheme}.json").read_text())
        assert record["scheme"] == scheme
        # a small model (a scale per 24-40 weights, biases in float32): bench/quantize.py measures the real sizes
        assert record["weight_bytes_quantized"] <= 0.35 * record["weight_bytes"]
        assert record["file_bytes"] < record["float_file_bytes"] / 2
        e = record["eval"]
        assert e["tokens"] > 1000 and 0 <= e["mean_kl"] < 0.01 and 0.95 <= e["same_top"] <= 1
        assert abs(e["relative_change"]) < 0.01
        assert e["perplexity_quantized"] == pytest.approx(e["perplexity"] * (1 + e["relative_change"]), rel=1e-12)
    info = json.loads(ok(run_cli("info", quantized_lm / "row.npz", "--json")).stdout)
    assert info["format_version"] == 2 and info["quantization"]["scheme"] == "row"
    assert "int8" in ok(run_cli("info", quantized_lm / "row.npz")).stdout
    with NpzReader(str(quantized_lm / "row.npz")) as reader:
        assert reader.get("param.layers.0.Wh").dtype == np.int8 and reader.get("param.layers.0.b").dtype == np.float32


@pytest.mark.parametrize("command", [
    ["score", "--per-token", "--json", "the cat sat on the mat", "a dog"],
    ["score", "--file", CORPORA / "demo.txt", "--json"],
    ["score", "--file", CORPORA / "demo.txt", "--continuous", "--json"],
    ["score", "--file", CORPORA / "demo.txt", "--per-line", "--workers", "2"],
    ["sample", "--length", "40", "--seed", "4", "--temperature", "0.9"],
    ["sample", "--length", "30", "--seed", "4", "-n", "6", "--top-k", "5"],
    ["sample", "--length", "20", "--beam", "4", "--prime", "the"],
    ["rescore", CORPORA / "nbest.txt"],
    ["evaluate", CORPORA / "demo.txt", "--json"],
])
def test_a_quantized_model_runs_as_its_dequantized_float_model(quantized_lm, command):
    for scheme in int8.SCHEMES:
        got = ok(run_cli(*command, "--model", quantized_lm / f"{scheme}.npz")).stdout
        assert got == ok(run_cli(*command, "--model", quantized_lm / f"{scheme}-dequantized.npz")).stdout


@pytest.mark.parametrize("command", [
    ["score", "--per-token", "--json", "the cat sat on the mat", "a dog"],
    ["rescore", CORPORA / "nbest.txt"],
    ["evaluate", CORPORA / "demo.txt", "--json"],
])
def test_int8_steps_leave_scoring_in_float32(quantized_lm, command):
    got = ok(run_cli(*command, "--model", quantized_lm / "int8.npz")).stdout
    assert got == ok(run_cli(*command, "--model", quantized_lm / "row-dequantized.npz")).stdout


def test_int8_steps_measure_generation_too(quantized_lm):
    record = json.loads((quantized_lm / "int8.json").read_text())
    assert record["activations"] == "int8"
    scoring, generation = record["eval"], record["eval_generation"]
    assert generation["tokens"] == scoring["tokens"] and generation["perplexity"] == scoring["perplexity"]
    assert abs(generation["relative_change"]) < 0.01 and 0 <= generation["mean_kl"] < 0.01
    assert generation["perplexity_quantized"] != scoring["perplexity_quantized"]  # another arithmetic
    info = json.loads(ok(run_cli("info", quantized_lm / "int8.npz", "--json")).stdout)
    assert info["quantization"]["scheme"] == "row"


@pytest.mark.parametrize("command", [
    ["sample", "--length", "60", "--seed", "4", "--temperature", "0.9"],
    ["sample", "--length", "30", "--seed", "4", "-n", "6", "--top-k", "5", "--json"],
    ["sample", "--length", "20", "--beam", "4", "--prime", "the"],
])
def test_int8_steps_give_the_same_bytes_on_one_core_or_two(quantized_lm, command, monkeypatch):
    from tests.conftest import use_cores

    model = ("--model", quantized_lm / "int8.npz")
    both = ok(run_cli(*command, *model)).stdout
    use_cores(monkeypatch, 1)
    assert ok(run_cli(*command, *model)).stdout == both


def test_quantized_scores_stay_close_to_the_float_model(quantized_lm):
    def logprob(name):
        out = ok(run_cli("score", "--json", "the cat sat on the mat", "--model", quantized_lm / name)).stdout
        return json.loads(out)[0]["logprob"]

    assert logprob("row.npz") == pytest.approx(logprob("float.npz"), rel=1e-2)


def test_what_a_quantized_model_refuses_and_what_it_allows(quantized_lm, tmp_path):
    q = quantized_lm / "row.npz"
    again = run_cli("quantize", q, "-o", tmp_path / "again.npz")
    assert again.exit_code != 0 and "quantized already" in again.stderr
    resume = run_cli("train", CORPORA / "demo.txt", "--resume", q)
    assert resume.exit_code != 0 and "--init-from" in resume.stderr and "Traceback" not in resume.stderr
    explain = run_cli("explain", "--model", q, "the cat")
    assert explain.exit_code != 0 and "int8" in explain.stderr
    same = run_cli("quantize", quantized_lm / "float.npz", "-o", quantized_lm / "float.npz")
    assert same.exit_code != 0  # the output would eat the input
    ok(run_cli("train", CORPORA / "demo.txt", "--init-from", q, "--epochs", "1", "--out", tmp_path / "tuned.npz"))
    tuned = load_model_checkpoint(str(tmp_path / "tuned.npz"))
    assert tuned.quantization is None and tuned.params["layers.0.Wh"].dtype == np.float32
    export = ok(run_cli("export", q, "--to", "safetensors", "-o", tmp_path / "q.safetensors"))
    assert "float32 values" in export.stderr
    scheme = run_cli("quantize", quantized_lm / "float.npz", "-o", tmp_path / "x.npz", "--scheme", "block16")
    assert scheme.exit_code != 0 and "row, block32" in scheme.stderr


def _rewrite(src, dst, change):
    with NpzReader(str(src)) as reader:
        arrays = {k: reader.get(k) for k in reader.keys()}
    change(arrays)
    atomic_save_npz(str(dst), arrays)


@pytest.mark.parametrize("change, needle", [
    (lambda a: a["scale.layers.0.Wh"].__setitem__((0, 0), np.nan), "finite and positive"),
    (lambda a: a["scale.layers.0.Wh"].__setitem__((0, 1), np.inf), "finite and positive"),
    (lambda a: a["scale.layers.1.Wx"].__setitem__((0, 2), 0.0), "finite and positive"),
    (lambda a: a["scale.output.W"].__setitem__((0, 0), -1.0), "finite and positive"),
    (lambda a: a.__setitem__("scale.embed.weight", a["scale.embed.weight"].astype(np.float64)), "float32"),
    (lambda a: a.__setitem__("scale.layers.0.Wh", a["scale.layers.0.Wh"][:, :-1]), "expected"),
    (lambda a: a.pop("scale.layers.0.Wh"), "scales of layers.0.Wh are missing"),
    (lambda a: a.__setitem__("scale.layers.9.Wh", np.ones((1, 4), np.float32)), "disagree"),
    (lambda a: a.__setitem__("param.layers.0.Wh", a["param.layers.0.Wh"].view(np.uint8)), "(uint8), expected"),
    (lambda a: a.__setitem__("quantization", np.array('{"bits": 4, "scheme": "row", "weights": []}')), "damaged"),
])
def test_hostile_scales_and_records_are_refused_with_one_line(quantized_lm, tmp_path, change, needle):
    bad = tmp_path / "bad.npz"
    _rewrite(quantized_lm / "row.npz", bad, change)
    result = run_cli("score", "--model", bad, "the cat")
    assert result.exit_code != 0 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_every_task_runs_quantized_as_its_dequantized_float_model(tmp_path):
    runs = {"classify": (CORPORA / "sentiment.tsv", ["classify", "--json", "a fine film"]),
            "tag": (CORPORA / "ner.txt", ["tag", "--json", "Jack fruit is sweet ."]),
            "translate": (CORPORA / "dates.tsv", ["translate", "--json", "May 1, 2000"])}
    assert set(runs) | {"lm"} == set(TASKS)  # the language model: the tests above
    for task, (corpus, command) in runs.items():
        ok(run_cli("train", corpus, "--task", task, "--hidden", "24", "--embed", "12", "--layers", "1",
                   "--epochs", "1", "--out", tmp_path / f"{task}.npz"))
        ok(run_cli("quantize", tmp_path / f"{task}.npz", "-o", tmp_path / f"{task}-q.npz", "--scheme", "block32"))
        ck = load_model_checkpoint(str(tmp_path / f"{task}-q.npz"), training_state=False)
        assert ck.quantization["scheme"] == "block32" and "embed.weight" in ck.quantization["weights"]
        ck.quantization = None
        save_checkpoint(str(tmp_path / f"{task}-f.npz"), ck)
        got = ok(run_cli(*command, "--model", tmp_path / f"{task}-q.npz")).stdout
        assert got == ok(run_cli(*command, "--model", tmp_path / f"{task}-f.npz")).stdout
        refused = run_cli("quantize", tmp_path / f"{task}.npz", "-o", tmp_path / "x.npz", "--activations", "int8")
        assert refused.exit_code == 2 and "language model" in refused.stderr and not (tmp_path / "x.npz").exists()
        evaluated = run_cli("quantize", tmp_path / f"{task}.npz", "-o", tmp_path / "x.npz", "--eval", corpus)
        assert evaluated.exit_code == 2 and "rnncli evaluate" in evaluated.stderr


def _exact_reference(x, W, scheme, pieces):
    """The int8 product's maths in float64 from the definition (kernels/int8.py's docstring)."""
    from rnncli.kernels.int8 import _recover

    K = W.shape[0]
    size = K // pieces
    starts = np.concatenate([int8.group_starts(size, scheme)[:-1] + p * size for p in range(pieces)] + [[K]])
    q, s = _recover(W, starts)
    out = np.empty((x.shape[0], W.shape[1]))
    for b in range(x.shape[0]):
        m = np.abs(x[b]).max()
        sx = np.float32(m / np.float32(127)) if m > 0 else np.float32(1)
        xq = np.clip(np.rint(x[b] / sx), -127, 127).astype(np.int64)
        acc = np.zeros(W.shape[1])
        for g in range(len(starts) - 1):
            acc += s[g].astype(np.float64) * (xq[starts[g]:starts[g + 1], None] * q[starts[g]:starts[g + 1]]).sum(0)
        out[b] = acc * np.float64(sx)
    return out


@pytest.mark.parametrize("scheme", int8.SCHEMES)
@pytest.mark.parametrize("K, F, pieces", [(512, 2048, 1), (1024, 300, 2), (200, 65, 1), (70, 33, 1), (6, 5, 2)])
def test_int8_products_are_the_exact_integer_maths_whatever_the_kernel(scheme, K, F, pieces):
    from rnncli.kernels.int8 import BYTE_DOTS, int8_form, int8_product

    rng = np.random.default_rng(K + F)
    W = np.concatenate([int8.dequantize(*int8.quantize(rng.normal(size=(K // pieces, F)).astype(np.float32) * 0.05,
                                                       scheme), scheme) for _ in range(pieces)])
    x = np.tanh(rng.normal(size=(6, K))).astype(np.float32)
    x[2] = 0.0  # a zero row
    portable = np.empty((6, F), np.float32)
    int8_product(x, int8_form(W, scheme, pieces, byte_dot_products=False), portable)
    np.testing.assert_allclose(portable, _exact_reference(x, W, scheme, pieces), rtol=1e-5, atol=1e-6)
    alone = np.empty((1, F), np.float32)
    int8_product(x[4:5], int8_form(W, scheme, pieces, byte_dot_products=False), alone)
    assert np.array_equal(alone[0], portable[4])  # a row's numbers are its own
    if BYTE_DOTS:  # this CPU has AVX-512 VNNI: its kernel gives the same bytes, one row or many
        vnni = np.empty((6, F), np.float32)
        int8_product(x, int8_form(W, scheme, pieces, byte_dot_products=True), vnni)
        assert np.array_equal(vnni, portable)
        int8_product(x[4:5], int8_form(W, scheme, pieces, byte_dot_products=True), alone)
        assert np.array_equal(alone[0], portable[4])


def test_int8_products_shared_by_two_cores_are_the_same_numbers():
    from rnncli.kernels.int8 import int8_form, one_core_product
    from rnncli.kernels.two_cores import new_mailbox, shared_int8_product, with_helper

    rng = np.random.default_rng(3)
    W = int8.dequantize(*int8.quantize(rng.normal(size=(512, 2048)).astype(np.float32), "block32"), "block32")
    form = int8_form(W, "block32")
    for rows in (1, 3):
        x = np.tanh(rng.normal(size=(rows, 512))).astype(np.float32)
        alone, shared = np.empty((rows, 2048), np.float32), np.empty((rows, 2048), np.float32)
        one_core_product(x, *form, alone)
        mailbox = new_mailbox()

        def work(x=x, mailbox=mailbox, shared=shared):
            shared_int8_product(x, *form, mailbox, shared)

        with_helper(mailbox, work, x)
        assert np.array_equal(shared, alone)


def test_a_matrix_that_is_not_int8_is_refused_by_the_int8_form():
    from rnncli.kernels.int8 import int8_form

    W = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    assert int8_form(W, "row") is None
    assert int8_form(int8.dequantize(*int8.quantize(W, "block32"), "block32"), "row") is None


def test_a_sample_keeps_int8_weights_in_memory_and_reads_them_as_their_float_values(quantized_lm):
    loaded = load_model_checkpoint(str(quantized_lm / "int8.npz"), training_state=False)
    kept = load_model_checkpoint(str(quantized_lm / "int8.npz"), training_state=False, int8_in_memory=True)
    for name, value in kept.params.items():
        if name in kept.quantization["weights"]:
            assert isinstance(value, int8.Int8Weights) and value.q.dtype == np.int8
            assert value.shape == loaded.params[name].shape and value.dtype == np.float32
            assert np.array_equal(np.asarray(value), loaded.params[name])
            assert np.array_equal(value[1:3], loaded.params[name][1:3])
        else:
            assert isinstance(value, np.ndarray)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_every_cell_steps_in_int8_near_its_float_steps(cell):
    """Each cell's single step with int8 steps (its own stacking of the matrices, kernels/int8.py):
    the logits near the dequantized float model's steps, and the same numbers one row or three."""
    from rnncli.execution.steps import Steps
    from rnncli.inference.quantize import quantized
    from rnncli.models.model import Model

    class Stub:  # the checkpoint's parts quantized() reads
        model = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=40, layers=2)
        train = tokenizer_config = tokenizer = None
        state, version = {}, ""

    model = Model(Stub.model)
    Stub.params = model.init_params(np.random.default_rng(1), np.float32)
    ck = quantized(Stub, "block32", "int8")
    int8_model, float_model = Model(ck.model), Model(Stub.model)
    tokens = np.array([3, 1, 7])
    got, want = [], []
    for m, out in ((int8_model, got), (float_model, want)):
        state = m.initial_state(3)
        weights = Steps(m, ck.params, 3, 10).weights
        for _ in range(4):
            logits, state = m.step(ck.params, tokens, state, weights)
            out.append(logits)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0.05, atol=0.02)
    alone = int8_model.step(ck.params, tokens[1:2], int8_model.initial_state(1),
                            Steps(int8_model, ck.params, 1, 10).weights)[0]
    assert np.array_equal(alone[0], got[0][1])
