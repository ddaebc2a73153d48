"""The adaptive softmax (models/adaptive.py): PyTorch's numbers through a committed float64
reference, normalisation, gradients by finite differences through the factored loss (whole and in
shards), the step's distribution and sampling from it (a chi-square test), the commands end to end,
export and import, and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from rnncli.config import ModelConfig
from rnncli.models.adaptive import AdaptiveHead, default_cutoffs
from rnncli.models.model import Model
from tests.conftest import CORPORA, run_cli, use_cores
from tests.gradcheck import assert_close_grads, numerical_grad

REFERENCE = np.load(Path(__file__).parent / "reference" / "adaptive.npz")
V, H = 23, 8


def reference_head(dtype=np.float64):
    head = AdaptiveHead(H, V, [int(c) for c in REFERENCE["cutoffs"]], float(REFERENCE["div_value"]))
    params = {name: REFERENCE[name].astype(dtype) for name in head.param_shapes()}
    return head, params


def test_the_layout_is_pytorchs():
    head, params = reference_head()
    assert head.dims == [4, 2] and head.bounds == [5, 12, 23]
    assert {k: v.shape for k, v in params.items()} == head.param_shapes()


def test_log_probabilities_equal_pytorchs_log_prob():
    head, params = reference_head()
    top = REFERENCE["top"][:, None, :]  # (T=7, B=1, H)
    got = head.next_token_logprobs(params, top)[:, 0]
    np.testing.assert_allclose(got, REFERENCE["log_prob"], rtol=0, atol=1e-12)
    targets = REFERENCE["targets"][:, None]
    np.testing.assert_allclose(head.target_logprobs(params, top, targets)[:, 0],
                               REFERENCE["log_prob"][np.arange(7), REFERENCE["targets"]], rtol=0, atol=1e-12)


def test_loss_and_gradients_equal_pytorchs():
    head, params = reference_head()
    top = REFERENCE["top"][:, None, :]
    loss, cache = head.loss(params, top, REFERENCE["targets"][:, None])
    assert loss == pytest.approx(float(REFERENCE["loss"]), abs=1e-12)
    grads, tied_share, dtop = head.backward(params, cache, 7, 1)
    assert tied_share is None and set(grads) == set(params)
    np.testing.assert_allclose(dtop[:, 0], REFERENCE["dtop"], atol=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(g, REFERENCE["grad." + name], atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_every_row_sums_to_one_over_the_vocabulary(dtype, tol):
    head = AdaptiveHead(32, 3000, [100, 700, 2000], 2.0)
    rng = np.random.default_rng(1)
    params = {k: (v * 4).astype(dtype) for k, v in head.init_params(rng, dtype).items()}
    params["output.head.b"] = rng.normal(0, 2, params["output.head.b"].shape).astype(dtype)
    lp = head.next_token_logprobs(params, rng.normal(0, 3, (5, 4, 32)).astype(dtype))
    assert lp.shape == (5, 4, 3000) and lp.dtype == dtype
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(-1), 1.0, rtol=0, atol=tol)


def adaptive_config(**kw) -> ModelConfig:
    return ModelConfig(**{"cell": "lstm", "vocab_size": V, "embed": 4, "hidden": H, "layers": 2, "softmax": "adaptive",
                          "cutoffs": [5, 12], "div_value": 2.0, **kw})


def test_model_gradients_through_the_factored_loss():
    cfg = adaptive_config(dropout=0.3)
    rng = np.random.default_rng(0)
    params = Model(cfg).init_params(rng, np.float64)
    T, B = 3, 4
    inputs = rng.integers(0, V, (T, B))
    targets = np.array([[0, 4, 5, 22], [11, 12, 1, 7], [3, 15, 9, 20]])  # every cluster, both edges
    state0 = [tuple(rng.normal(size=s.shape) for s in st) for st in Model(cfg).initial_state(B, np.float64)]
    masks = Model(cfg).dropout_masks(rng, T, B, np.float64)
    loss, _, cache = Model(cfg).forward(params, inputs, targets, state0, masks)
    grads = Model(cfg).backward(params, cache)
    assert set(grads) == set(params) and "output.W" not in params

    def f():
        return Model(cfg).forward(params, inputs, targets, state0, masks)[0]

    for name, value in params.items():
        assert_close_grads(name, grads[name], numerical_grad(f, value))


def test_gradients_in_shards_are_the_whole_batchs(monkeypatch):
    cfg = adaptive_config()
    rng = np.random.default_rng(3)
    params = Model(cfg).init_params(rng, np.float64)
    inputs, targets = rng.integers(0, V, (2, 16)), rng.integers(0, V, (2, 16))
    state0 = Model(cfg).initial_state(16, np.float64)
    whole_loss, _, whole_cache = Model(cfg, shard_batches=False).forward(params, inputs, targets, state0)
    whole = Model(cfg, shard_batches=False).backward(params, whole_cache)
    use_cores(monkeypatch, 2)
    loss, _, cache = Model(cfg).forward(params, inputs, targets, state0)
    assert len(cache.parts) == 2
    assert loss == pytest.approx(whole_loss, rel=1e-12)
    for name, g in Model(cfg).backward(params, cache).items():
        np.testing.assert_allclose(np.asarray(g), np.asarray(whole[name]), rtol=1e-10, atol=1e-13, err_msg=name)


def test_the_step_gives_the_exact_distribution_the_chunk_gives():
    cfg = adaptive_config()
    model = Model(cfg)
    rng = np.random.default_rng(2)
    params = model.init_params(rng, np.float32)
    tokens = rng.integers(0, V, (6, 3))
    chunk, _ = model.next_token_logprobs(params, tokens, model.initial_state(3))
    state = model.initial_state(3)
    for t in range(6):
        logits, state = model.step(params, tokens[t], state)
        np.testing.assert_allclose(logits, chunk[t], atol=2e-6)
    np.testing.assert_allclose(np.exp(logits.astype(np.float64)).sum(-1), 1.0, atol=1e-5)


def sampled_first_tokens(model, params, rows: int, top_k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`rows` samples of one token after the context [<EOS>, 3] through the generating kernel, and
    the exact probabilities of that token (the chunk's)."""
    from rnncli.execution.steps import Steps

    context = np.array([[1] * rows, [3] * rows], np.int64)
    steps = Steps(model, params, rows, 1)
    h, c = model.step_state(model.initial_state(rows))
    out, lps = np.zeros((rows, 1), np.int64), np.zeros((rows, 1))
    uniforms = np.random.default_rng(7).random((rows, 1))
    settings = (np.ones(rows), np.full(rows, top_k, np.int64), np.ones(rows))
    steps.generate(h, c, context, uniforms, *settings, False, np.zeros(rows, bool), out, lps)
    exact, _ = model.next_token_logprobs(params, context[:, :1], model.initial_state(1))
    return out[:, 0], np.exp(exact[-1, 0].astype(np.float64))


@pytest.mark.parametrize("top_k", [0, 9])
def test_samples_follow_the_exact_distribution(top_k):
    """A chi-square test of 20,000 samples against the exact probabilities (without <UNK>, which is
    never drawn; with top-k, the k likeliest over the whole vocabulary, renormalised)."""
    model = Model(adaptive_config(layers=1))
    params = {k: v * 3 for k, v in model.init_params(np.random.default_rng(4), np.float32).items()}
    drawn, p = sampled_first_tokens(model, params, 20000, top_k)
    p[0] = 0.0
    if top_k:
        order = np.argsort(-p, kind="stable")
        assert set(np.unique(drawn)) <= set(order[:top_k])  # exact over every cluster
        p[order[top_k:]] = 0.0
    p /= p.sum()
    counts = np.bincount(drawn, minlength=V)
    kept = p > 0
    assert counts[~kept].sum() == 0
    assert chisquare(counts[kept], p[kept] * counts.sum()).pvalue > 1e-3


def test_default_cutoffs_fit_any_vocabulary():
    assert default_cutoffs(33278) == [2000, 10000]
    assert default_cutoffs(1_000_000) == [2000, 10000, 50000]
    assert default_cutoffs(500) == [125] and default_cutoffs(3) == [2]


@pytest.fixture(scope="module")
def adaptive_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adaptive") / "model.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--level", "word", "--softmax", "adaptive", "--cutoffs", "20,60",
                     "--div-value", "2", "--layers", "1", "--hidden", "32", "--embed", "16", "--epochs", "2",
                     "--seq-len", "20", "--batch-size", "8", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


def test_train_score_sample_and_info(adaptive_model, tmp_path):
    from rnncli.tasks import load_model_checkpoint

    ck = load_model_checkpoint(str(adaptive_model))
    assert ck.model.softmax == "adaptive" and ck.model.cutoffs == [20, 60]
    info = run_cli("info", adaptive_model)
    assert "adaptive softmax" in info.stdout and "20, 60" in info.stdout
    sentence = "the cat sat on the mat"
    result = run_cli("score", "--model", adaptive_model, sentence, "--per-token", "--json")
    assert result.exit_code == 0, result.stderr
    scored = [t["logprob"] for t in json.loads(result.stdout)[0]["per_token"]]
    model = Model(ck.model)
    ids = ck.tokenizer.encode(sentence).astype(np.int64)  # its words, then <EOS>
    inputs = np.concatenate([[1], ids[:-1]])[:, None]  # read from a line's start
    lp, _ = model.logprobs(ck.params, inputs, ids[:, None], model.initial_state(1))
    np.testing.assert_allclose(scored, lp[:, 0], atol=1e-5)
    for args in (["--length", "20", "--seed", "1"], ["-n", "3", "--length", "10", "--top-p", "0.9"],
                 ["--beam", "3", "--length", "5", "--prime", "the"]):
        result = run_cli("sample", "--model", adaptive_model, *args)
        assert result.exit_code == 0 and result.stdout.strip(), result.stderr
    page = json.loads(run_cli("explain", "--model", adaptive_model, sentence, "--json").stdout)
    assert page and "Traceback" not in json.dumps(page)


def test_export_and_import_as_pytorchs_adaptive_layer(adaptive_model, tmp_path):
    from rnncli.formats.safetensors import read as read_safetensors

    exported = tmp_path / "m.safetensors"
    assert run_cli("export", adaptive_model, "--to", "torch", "-o", exported).exit_code == 0
    tensors, _ = read_safetensors(str(exported))
    assert {"decoder.head.weight", "decoder.head.bias", "decoder.tail.0.0.weight", "decoder.tail.0.1.weight",
            "decoder.tail.1.0.weight", "decoder.tail.1.1.weight"} <= set(tensors)
    assert tensors["decoder.tail.1.0.weight"].shape == (8, 32)  # hidden 32 // 2^2
    back = tmp_path / "back.npz"
    assert run_cli("import", exported, "-o", back).exit_code == 0
    text = tmp_path / "s.txt"
    text.write_text("the cat sat on the mat\n")
    scores = [run_cli("score", "--model", m, text, "--json").stdout for m in (adaptive_model, back)]
    assert scores[0] == scores[1]


def test_a_plain_pytorch_state_dict_with_an_adaptive_output_imports(adaptive_model, tmp_path):
    """pytorch/examples-style names, no rnncli metadata: the cutoffs and div value come from the shapes."""
    from rnncli.formats.interop import from_torch
    from rnncli.formats.safetensors import read as read_safetensors
    from rnncli.tasks import load_model_checkpoint

    exported = tmp_path / "m.safetensors"
    run_cli("export", adaptive_model, "--to", "torch", "-o", exported)
    tensors, _ = read_safetensors(str(exported))
    renamed = {k.replace("decoder.", "criterion."): v for k, v in tensors.items()}
    ck = load_model_checkpoint(str(adaptive_model))
    imported = from_torch(renamed, ck.tokenizer, ck.tokenizer_config, source="m")
    assert imported.model.softmax == "adaptive"
    assert (imported.model.cutoffs, imported.model.div_value) == ([20, 60], 2.0)
    for name, value in ck.params.items():
        np.testing.assert_array_equal(imported.params[name], value, err_msg=name)


def test_onnx_export_gives_the_whole_distribution(adaptive_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from rnncli.tasks import load_model_checkpoint

    out = tmp_path / "m.onnx"
    assert run_cli("export", adaptive_model, "--to", "onnx", "-o", out).exit_code == 0
    ck = load_model_checkpoint(str(adaptive_model))
    tokens = np.array([[1], [5], [30], [70]], np.int64)
    zeros = np.zeros((1, 1, 32), np.float32)
    lp = ort.InferenceSession(str(out)).run(None, {"tokens": tokens, "h0": zeros, "c0": zeros})[0]
    model = Model(ck.model)
    ours, _ = model.next_token_logprobs(ck.params, tokens, model.initial_state(1))
    np.testing.assert_allclose(lp, ours, atol=1e-5)
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(-1), 1.0, atol=1e-5)


@pytest.mark.torch
def test_pytorchs_own_adaptive_layer_scores_what_rnncli_scores(adaptive_model, tmp_path):
    torch = pytest.importorskip("torch")
    from rnncli.formats.safetensors import read as read_safetensors
    from rnncli.tasks import load_model_checkpoint

    exported = tmp_path / "m.safetensors"
    run_cli("export", adaptive_model, "--to", "torch", "-o", exported)
    tensors, meta = read_safetensors(str(exported))
    config = json.loads(meta["model_config"])
    layer = torch.nn.AdaptiveLogSoftmaxWithLoss(32, config["vocab_size"], config["cutoffs"],
                                                div_value=config["div_value"], head_bias=True)
    layer.load_state_dict({k.removeprefix("decoder."): torch.from_numpy(v.copy()) for k, v in tensors.items()
                           if k.startswith("decoder.")})
    ck = load_model_checkpoint(str(adaptive_model))
    top = np.random.default_rng(0).normal(size=(6, 32)).astype(np.float32)
    with torch.no_grad():
        theirs = layer.log_prob(torch.from_numpy(top)).numpy()
    ours = Model(ck.model).head.next_token_logprobs(ck.params, top[:, None])[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.parametrize("args, message", [
    (["--softmax", "adaptive"], "word and subword"),  # the char level
    (["--level", "word", "--softmax", "adaptive", "--tie-weights", "--embed", "32"], "tie"),
    (["--level", "word", "--softmax", "adaptive", "--cutoffs", "20,10"], "increase"),
    (["--level", "word", "--softmax", "adaptive", "--cutoffs", "20,x"], "whole numbers"),
    (["--level", "word", "--softmax", "adaptive", "--cutoffs", "100000"], "below the vocabulary size"),
    (["--level", "word", "--softmax", "adaptive", "--div-value", "64"], "dimension"),
    (["--level", "word", "--cutoffs", "20"], "--softmax adaptive"),
    (["--level", "word", "--softmax", "sparse"], "full, adaptive"),
])
def test_refusals_name_the_option_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--hidden", "32", "--max-steps", "2", "--out", out, *args)
    assert result.exit_code != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_classifier_refuses_the_adaptive_softmax(tmp_path):
    result = run_cli("train", CORPORA / "sentiment.tsv", "--task", "classify", "--softmax", "adaptive",
                     "--out", tmp_path / "m.npz")
    assert result.exit_code != 0 and "softmax" in result.stderr


def test_int8_weights_cover_the_factored_layer_and_run_as_their_float_values(adaptive_model, tmp_path, monkeypatch):
    """#32's quantize on an adaptive model: every matrix of the head and the tails in int8; the
    quantized model scores and samples as its dequantized float model does; its int8 steps give
    the same bytes on one core or two."""
    from rnncli.formats import int8
    from rnncli.formats.checkpoint import save_checkpoint
    from rnncli.tasks import load_model_checkpoint

    ck = load_model_checkpoint(str(adaptive_model))
    covered = set(int8.quantize_params(ck.params, "row"))
    assert {n for n in ck.params if n.startswith("output.") and n.endswith(".W")} <= covered
    q = tmp_path / "q.npz"
    assert run_cli("quantize", adaptive_model, "-o", q, "--activations", "float32").exit_code == 0
    dequantized = load_model_checkpoint(str(q), training_state=False)
    dequantized.quantization = None
    save_checkpoint(str(tmp_path / "float.npz"), dequantized)
    for command in (["score", "--per-token", "--json", "the cat sat on the mat"],
                    ["sample", "--length", "20", "--seed", "4", "-n", "3", "--top-k", "7"]):
        got = run_cli(*command, "--model", q)
        assert got.exit_code == 0 and got.stdout == run_cli(*command, "--model", tmp_path / "float.npz").stdout
    steps = tmp_path / "int8.npz"
    assert run_cli("quantize", adaptive_model, "-o", steps, "--activations", "int8").exit_code == 0
    command = ["sample", "--length", "30", "--seed", "4", "--model", steps]
    both = run_cli(*command).stdout
    use_cores(monkeypatch, 1)
    assert both and run_cli(*command).stdout == both


def test_the_memory_check_counts_the_factored_layout():
    """A million words: the dense layer's (B*T, V) logits are refused, naming the adaptive softmax;
    the adaptive one's head and its tails at the rows that reach them (Zipf-like ids) fit."""
    from rnncli.config import TrainConfig
    from rnncli.errors import UsageError
    from rnncli.training.request import check_memory, estimate_memory

    train = TrainConfig(batch_size=32, seq_len=35)
    full = ModelConfig(vocab_size=1_000_000, embed=256, hidden=256)
    with pytest.raises(UsageError, match="--softmax adaptive"):
        check_memory(full, train)
    adaptive = ModelConfig(vocab_size=1_000_000, embed=256, hidden=256, softmax="adaptive")
    ids = (np.random.default_rng(0).zipf(1.3, 200_000) - 1).clip(0, 999_999)
    check_memory(adaptive, train, ids)
    logits_full = estimate_memory(full, train) - 16 * sum(int(np.prod(s)) for s in Model(full).param_shapes().values())
    logits_adaptive = estimate_memory(adaptive, train, ids) - 16 * sum(
        int(np.prod(s)) for s in Model(adaptive).param_shapes().values())
    assert logits_adaptive < logits_full / 20
