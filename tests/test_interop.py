"""Models that travel: export to PyTorch's layout and to safetensors, import back, round trips."""

import json

import numpy as np
import pytest

from rnncli.errors import RnncliError
from rnncli.formats import safetensors
from rnncli.kernels.cells import CELL_NAMES, get_cell
from rnncli.training.request import load_model_checkpoint
from tests.conftest import CORPORA, run_cli

TINY = ("--layers", "2", "--hidden", "8", "--embed", "6", "--seq-len", "8", "--batch-size", "2", "--max-steps", "3",
        "--val-fraction", "0.05", "--json")
SENTENCE = "The apple and pear salad was sweet."


@pytest.fixture(scope="module", params=CELL_NAMES)
def model_of(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", request.param, *TINY, "--out", out)
    assert result.exit_code == 0, result.stderr
    return request.param, out


def per_token(model_path):
    result = run_cli("score", "--model", model_path, SENTENCE, "--per-token", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_safetensors_round_trip_is_bit_identical(tmp_path, model_of):
    cell, path = model_of
    exported = tmp_path / "m.safetensors"
    assert run_cli("export", path, "--to", "safetensors", "-o", exported).exit_code == 0
    back = tmp_path / "back.npz"
    result = run_cli("import", exported, "-o", back)
    assert result.exit_code == 0, result.stderr
    a, b = load_model_checkpoint(str(path)), load_model_checkpoint(str(back))
    assert a.model == b.model and a.tokenizer.vocab == b.tokenizer.vocab
    for name, value in a.params.items():
        assert b.params[name].dtype == value.dtype and np.array_equal(b.params[name], value), name


def test_torch_export_round_trip(tmp_path, model_of):
    cell, path = model_of
    exported = tmp_path / "m.torch.safetensors"
    result = run_cli("export", path, "--to", "torch", "-o", exported)
    if get_cell(cell).torch_module is None:
        assert result.exit_code == 2 and cell in result.stderr and "Traceback" not in result.stderr
        assert get_cell(cell).not_in_torch in result.stderr
        assert not exported.exists()
        return
    assert result.exit_code == 0, result.stderr
    tensors, meta = safetensors.read(str(exported))
    assert meta["torch_module"] == get_cell(cell).torch_module
    assert json.loads(meta["vocabulary"])[:2] == ["<UNK>", "<EOS>"]
    back = tmp_path / "back.npz"
    result = run_cli("import", exported, "-o", back)
    assert result.exit_code == 0, result.stderr
    a, b = per_token(path), per_token(back)
    np.testing.assert_allclose([t["logprob"] for t in a[0]["per_token"]], [t["logprob"] for t in b[0]["per_token"]],
                               rtol=0, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("cell", [c for c in CELL_NAMES if get_cell(c).torch_module])
def test_the_readme_snippet_rebuilds_the_model_in_pytorch(tmp_path, cell):
    """The export, loaded into nn.Embedding -> nn.LSTM/GRU/RNN -> nn.Linear as the README shows,
    gives the per-token log-probabilities `rnncli score` gives (<= 1e-4 in float32)."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.npz"
    assert run_cli("train", CORPORA / "demo.txt", "--cell", cell, *TINY, "--out", path).exit_code == 0
    exported = tmp_path / "m.safetensors"
    assert run_cli("export", path, "--to", "torch", "-o", exported).exit_code == 0
    tensors, meta = safetensors.read(str(exported))
    config = json.loads(meta["model_config"])
    # --- as in the README ---
    V, D, H, L = config["vocab_size"], config["embed"], config["hidden"], config["layers"]
    kind = {"lstm": torch.nn.LSTM, "gru-cudnn": torch.nn.GRU, "rnn": torch.nn.RNN, "rnn-relu": torch.nn.RNN}[cell]
    extra = {"nonlinearity": "relu"} if cell == "rnn-relu" else {}
    net = torch.nn.ModuleDict({"embedding": torch.nn.Embedding(V, D), "rnn": kind(D, H, num_layers=L, **extra),
                               "decoder": torch.nn.Linear(H, V)})
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    vocab = json.loads(meta["vocabulary"])
    ids = [vocab.index(c) if c in vocab else 0 for c in SENTENCE] + [1]  # <EOS> ends the sentence
    inputs = torch.tensor([1] + ids[:-1])[:, None]  # each sentence starts after <EOS>
    with torch.no_grad():
        h, _ = net["rnn"](net["embedding"](inputs))
        logprobs = torch.log_softmax(net["decoder"](h), -1)[:, 0].gather(1, torch.tensor(ids)[:, None])[:, 0]
    # ---
    ours = [t["logprob"] for t in per_token(path)[0]["per_token"]]
    np.testing.assert_allclose(logprobs.numpy(), ours, rtol=0, atol=1e-4)


def test_import_of_a_foreign_vocabulary_moves_the_reserved_rows(tmp_path):
    """A PyTorch model whose vocabulary has <eos> and <unk> elsewhere (pytorch/examples' order)
    scores the same after import as rnncli's own model with the rows in rnncli's order."""
    path = tmp_path / "m.npz"
    assert run_cli("train", CORPORA / "demo.txt", "--level", "word", "--cell", "lstm", *TINY, "--out", path
                   ).exit_code == 0
    exported = tmp_path / "m.safetensors"
    assert run_cli("export", path, "--to", "torch", "-o", exported).exit_code == 0
    tensors, meta = safetensors.read(str(exported))
    vocab = json.loads(meta["vocabulary"])
    order = list(range(2, len(vocab))) + [1, 0]  # the foreign file: <eos>, <unk> last
    foreign = {k: (v[order] if k in ("embedding.weight", "decoder.weight", "decoder.bias") else v)
               for k, v in tensors.items()}
    safetensors.write(str(tmp_path / "foreign.safetensors"), foreign)
    (tmp_path / "vocab.json").write_text(json.dumps([vocab[i] for i in order[:-2]] + ["<eos>", "<unk>"]))
    back = tmp_path / "back.npz"
    result = run_cli("import", tmp_path / "foreign.safetensors", "--vocab", tmp_path / "vocab.json", "-o", back,
                     "--split", "words", "--blank-lines", "skip")  # read as the model was trained: rnncli's rule
    assert result.exit_code == 0, result.stderr
    a, b = per_token(path), per_token(back)
    assert [t["token"] for t in a[0]["per_token"]] == [t["token"] for t in b[0]["per_token"]]
    np.testing.assert_allclose([t["logprob"] for t in a[0]["per_token"]], [t["logprob"] for t in b[0]["per_token"]],
                               rtol=0, atol=1e-5)


BAD_IMPORTS = {
    "missing recurrent weights": (lambda t: {k: v for k, v in t.items() if "weight_hh" not in k}, "weight_hh"),
    "wrong recurrent shape": (lambda t: {**t, "rnn.weight_hh_l1": t["rnn.weight_hh_l1"][:, :-1]}, "weight_hh_l1"),
    "no embedding": (lambda t: {k: v for k, v in t.items() if k != "embedding.weight"}, "no embedding"),
    "no output layer": (lambda t: {k: v for k, v in t.items() if not k.startswith("decoder")}, "no output layer"),
    "vocabulary size differs": (lambda t: {**t, "embedding.weight": t["embedding.weight"][:-1],
                                           "decoder.weight": t["decoder.weight"][:-1],
                                           "decoder.bias": t["decoder.bias"][:-1]}, "entries"),
    "bidirectional": (lambda t: {**t, "rnn.weight_ih_l0_reverse": t["rnn.weight_ih_l0"]}, "bidirectional"),
    "non-finite weight": (lambda t: {**t, "rnn.bias_ih_l0": t["rnn.bias_ih_l0"] * np.nan}, "NaN"),
}


@pytest.mark.parametrize("case", BAD_IMPORTS)
def test_a_file_that_does_not_match_is_one_line_and_writes_nothing(tmp_path, case):
    path = tmp_path / "m.npz"
    assert run_cli("train", CORPORA / "demo.txt", "--cell", "lstm", *TINY, "--out", path).exit_code == 0
    exported = tmp_path / "m.safetensors"
    assert run_cli("export", path, "--to", "torch", "-o", exported).exit_code == 0
    tensors, meta = safetensors.read(str(exported))
    change, message = BAD_IMPORTS[case]
    safetensors.write(str(tmp_path / "bad.safetensors"), change(tensors), meta)
    result = run_cli("import", tmp_path / "bad.safetensors", "-o", tmp_path / "out.npz")
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out.npz").exists()


def test_pickled_pytorch_files_are_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"\x80\x04not really")
    result = run_cli("import", tmp_path / "model.pt", "-o", tmp_path / "out.npz")
    assert result.exit_code == 2 and "safetensors" in result.stderr and not (tmp_path / "out.npz").exists()


def framed(header: bytes, data: bytes = b"") -> bytes:
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize("data", [
    b"", b"\x05", b"\xff" * 8 + b"{}", framed(b'{"a":{"dtype":"F32","shape":[4],'), framed(b"[1, 2]"),
    framed(b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'),  # the data is missing
    framed(b'{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}', bytes(16)),  # shape and size disagree
    framed(b'{"a":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}}', bytes(16)),  # a dtype rnncli does not read
    framed(b'{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}', bytes(16)),
    framed(b'{"__metadata__":{"k":1}}'),
])
def test_damaged_safetensors_are_refused(tmp_path, data):
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with pytest.raises(RnncliError):
        safetensors.read(str(path))


def test_safetensors_reads_what_it_writes_including_bfloat16(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    safetensors.write(str(tmp_path / "t.safetensors"), {"a": a, "b": np.zeros(0, np.float64)}, {"k": "v"})
    tensors, meta = safetensors.read(str(tmp_path / "t.safetensors"))
    assert np.array_equal(tensors["a"], a) and tensors["b"].shape == (0,) and meta == {"k": "v"}
    raw = (a.view(np.uint32) >> 16).astype("<u2").tobytes()  # bfloat16: the top half of each float32
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, len(raw)]}}).encode()
    (tmp_path / "bf16.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw)
    w = safetensors.read(str(tmp_path / "bf16.safetensors"))[0]["w"]
    np.testing.assert_allclose(w, a, rtol=1e-2)


def test_onnx_export_gives_the_log_probabilities_rnncli_scores(tmp_path, model_of):
    """onnxruntime on the export: the same per-token log-probabilities as `rnncli score` (<= 1e-4),
    and the final states it returns continue the text as feeding it whole does."""
    ort = pytest.importorskip("onnxruntime")
    cell, path = model_of
    out = tmp_path / "m.onnx"
    result = run_cli("export", path, "--to", "onnx", "-o", out)
    if cell == "gru-simple":
        assert result.exit_code == 2 and "gru-simple" in result.stderr and not out.exists()
        return
    assert result.exit_code == 0, result.stderr
    tokenizer = json.loads((tmp_path / "m.tokenizer.json").read_text())
    vocab = tokenizer["vocabulary"]  # plain JSON: a list, not a JSON string inside JSON
    ck = load_model_checkpoint(str(path))
    L, H = ck.model.layers, ck.model.hidden
    ids = [vocab.index(c) if c in vocab else 0 for c in SENTENCE] + [1]
    tokens = np.array([1] + ids[:-1], np.int64)[:, None]  # (T, 1), starting after <EOS>
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    zeros = {n: np.zeros((L, 1, H), np.float32) for n in names if n != "tokens"}
    logprobs = session.run(None, {"tokens": tokens, **zeros})[0][:, 0]
    got = logprobs[np.arange(len(ids)), ids]
    ours = [t["logprob"] for t in per_token(path)[0]["per_token"]]
    np.testing.assert_allclose(got, ours, rtol=0, atol=1e-4)
    half = len(tokens) // 2  # stepping: two halves with the state carried give the same numbers
    first = session.run(None, {"tokens": tokens[:half], **zeros})
    states = dict(zip([n for n in names if n != "tokens"], first[1:], strict=True))
    second = session.run(None, {"tokens": tokens[half:], **states})[0]
    np.testing.assert_allclose(np.concatenate([first[0], second]), session.run(None, {"tokens": tokens, **zeros})[0],
                               rtol=0, atol=1e-5)


# ---- task models ------------------------------------------------------------------------------------

TASK_CORPORA = {"classify": "sentiment-test.tsv", "tag": "ner-test.txt", "translate": "dates-test.tsv"}


@pytest.fixture(scope="module", params=[("classify", "lstm"), ("tag", "gru-cudnn"), ("tag", "gru"),
                                        ("classify", "rnn-relu"), ("translate", "lstm"), ("translate", "gru-cudnn"),
                                        ("tag", "lstm-peephole")])
def task_model(request, tmp_path_factory):
    """A small bidirectional task model of a few steps (the exports must carry any weights)."""
    task, cell = request.param
    out = tmp_path_factory.mktemp(f"{task}-{cell}") / "m.npz"
    level = ["--level", "char"] if task == "translate" else []
    result = run_cli("train", CORPORA / TASK_CORPORA[task], "--task", task, "--bidirectional", "--cell", cell,
                     "--layers", "2", "--hidden", "8", "--embed", "6", "--max-steps", "3", *level, "--out", out)
    assert result.exit_code == 0, result.stderr
    return task, cell, out


def rnncli_logprobs(ck, source, target_in=None):
    from rnncli.tasks import build_model
    from rnncli.tasks.models import Batch, sub_params

    model = build_model(ck.model)
    if ck.model.task == "translate":
        state = model.encode(ck.params, source)
        return model.decoder.next_token_logprobs(sub_params(ck.params, "decoder."), target_in, state)[0]
    return model.logprobs(ck.params, Batch(source, None))


def test_task_models_export_to_onnx(tmp_path, task_model):
    """onnxruntime on a bidirectional classifier, tagger or translator: rnncli's log-probabilities
    (<= 1e-4 in float32)."""
    ort = pytest.importorskip("onnxruntime")
    task, cell, path = task_model
    out = tmp_path / "m.onnx"
    result = run_cli("export", path, "--to", "onnx", "-o", out)
    assert result.exit_code == 0, result.stderr
    ck = load_model_checkpoint(str(path))
    rng = np.random.default_rng(1)
    source = rng.integers(0, ck.model.vocab_size, (6, 3))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    if task == "translate":
        target_in = rng.integers(0, ck.model.vocab_size, (4, 3))
        got = session.run(None, {"source": source, "target_in": target_in})[0]
        ours = rnncli_logprobs(ck, source, target_in)
    else:
        got, ours = session.run(None, {"tokens": source})[0], rnncli_logprobs(ck, source)
    assert got.shape == ours.shape
    np.testing.assert_allclose(got, ours, rtol=0, atol=1e-4)


def test_task_models_round_trip_through_the_torch_layout(tmp_path, task_model):
    task, cell, path = task_model
    exported = tmp_path / "m.safetensors"
    result = run_cli("export", path, "--to", "torch", "-o", exported)
    if get_cell(cell).torch_module is None:
        assert result.exit_code == 2 and cell in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    tensors, meta = safetensors.read(str(exported))
    assert "rnn.weight_ih_l1_reverse" in tensors and meta["torch_module"].endswith("(bidirectional=True)")
    for fmt in ("torch", "safetensors"):
        if fmt == "safetensors":
            assert run_cli("export", path, "--to", "safetensors", "-o", exported).exit_code == 0
        back = tmp_path / f"back-{fmt}.npz"
        result = run_cli("import", exported, "-o", back)
        assert result.exit_code == 0, result.stderr
        a, b = load_model_checkpoint(str(path)), load_model_checkpoint(str(back))
        assert a.model == b.model and set(a.params) == set(b.params)
        for name, value in a.params.items():
            assert np.array_equal(b.params[name], value), (fmt, name)


@pytest.mark.torch
def test_a_bidirectional_tagger_runs_in_pytorch(tmp_path):
    """The torch export loaded into nn.Embedding -> nn.LSTM(bidirectional=True) -> nn.Linear."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.npz"
    assert run_cli("train", CORPORA / "ner-test.txt", "--task", "tag", "--bidirectional", "--layers", "2",
                   "--hidden", "8", "--embed", "6", "--max-steps", "3", "--out", path).exit_code == 0
    exported = tmp_path / "m.safetensors"
    assert run_cli("export", path, "--to", "torch", "-o", exported).exit_code == 0
    tensors, meta = safetensors.read(str(exported))
    c = json.loads(meta["model_config"])
    net = torch.nn.ModuleDict({"embedding": torch.nn.Embedding(c["vocab_size"], c["embed"]),
                               "rnn": torch.nn.LSTM(c["embed"], c["hidden"], num_layers=c["layers"],
                                                    bidirectional=True),
                               "output": torch.nn.Linear(2 * c["hidden"], len(c["labels"]))})
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    tokens = np.random.default_rng(2).integers(0, c["vocab_size"], (5, 2))
    with torch.no_grad():
        top, _ = net["rnn"](net["embedding"](torch.from_numpy(tokens)))
        theirs = torch.log_softmax(net["output"](top), -1).numpy()
    np.testing.assert_allclose(theirs, rnncli_logprobs(load_model_checkpoint(str(path)), tokens), rtol=0, atol=1e-5)
