"""`rnncli explain`: the page's numbers are score's numbers, the gradient norms are the finite
differences' norms, the gates are the cells' own gates, and the page is bounded and self-contained."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.inference.explain import gradient_norms, inputs_of, propose_units, text_features
from rnncli.inference.explain_page import STRIP_TOKENS
from rnncli.kernels.activations import sigmoid
from rnncli.models.model import Model
from tests.conftest import run_cli

PEAR = "The apple and pear salad was sweet."
PAIR = "The apple and pair salad was sweet."


def explain_json(model, *args):
    result = run_cli("explain", "--model", model, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


class Page(HTMLParser):
    """The parts of the page the tests read: each passage's token spans (text, data-nats), the
    polylines of the gradient chart, element ids."""

    def __init__(self, html: str):
        super().__init__()
        self.passages: list[list[tuple[str, float]]] = []
        self.lines: list[str] = []
        self.ids: set[str] = set()
        self.unit_strips: list[int] = []
        self._in_passage = self._in_unit = False
        self._token: list | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        cls = a.get("class", "")
        if tag == "div" and "passage" in cls.split():
            self.passages.append([])
            self._in_passage = True
        if tag == "div" and "unit" in cls.split():
            self.unit_strips.append(0)
            self._in_unit = True
        if tag == "span" and cls == "tok":
            if self._in_passage:
                self._token = ["", float(a["data-nats"])]
            elif self._in_unit:
                self.unit_strips[-1] += 1
        if tag == "polyline" and "gradient-line" in cls:
            self.lines.append(a["data-model"])

    def handle_data(self, data):
        if self._token is not None:
            self._token[0] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._token is not None:
            self.passages[-1].append(tuple(self._token))
            self._token = None
        if tag == "div":
            self._in_passage = self._in_unit = False


@pytest.mark.parametrize("fixture", ["char_model", "word_model"])
def test_page_numbers_are_score_per_token(request, fixture, tmp_path):
    model = request.getfixturevalue(fixture)
    page = tmp_path / "page.html"
    data = explain_json(model, PEAR, PAIR, "-o", page)
    result = run_cli("score", "--model", model, "--per-token", "--json", PEAR, PAIR)
    scored = {row["text"]: row for row in json.loads(result.stdout)}
    parsed = Page(page.read_text(encoding="utf-8"))
    assert len(parsed.passages) == 2
    for passage, spans in zip(data["passages"], parsed.passages, strict=True):
        expected = scored[passage["text"]]
        assert [t["token"] for t in passage["per_token"]] == [t["token"] for t in expected["per_token"]]
        assert [t["logprob"] for t in passage["per_token"]] == [t["logprob"] for t in expected["per_token"]]
        assert passage["logprob"] == pytest.approx(expected["logprob"])
        # the page: every token, in order, with its surprise
        shown = ["↵" if t["shown"] == "\n" else t["shown"] for t in passage["per_token"]]
        assert [s for s, _ in spans] == shown
        assert [n for _, n in spans] == [-t["logprob"] for t in passage["per_token"]]
        for t in passage["per_token"]:  # the top predictions are the best, best first
            probs = [g["logprob"] for g in t["top"]]
            assert probs == sorted(probs, reverse=True)
            assert t["logprob"] <= probs[0] + 1e-6
    assert data["logprob"] == pytest.approx(sum(r["logprob"] for r in scored.values()))
    if fixture == "char_model":  # one span per character: the text itself reads back
        assert "".join(s for s, _ in parsed.passages[0]) == PEAR + "↵"


@pytest.mark.parametrize("cell", ["rnn", "gru", "gru-cudnn", "lstm", "lstm-peephole"])
def test_gradient_norms_match_finite_differences(cell):
    cfg = ModelConfig(cell=cell, vocab_size=9, embed=5, hidden=4, layers=2)
    rng = np.random.default_rng(3)
    model = Model(cfg)
    params = model.init_params(rng, np.float64)
    params = {k: v * 3 for k, v in params.items()}  # weights large enough that gradients do not vanish at once
    ids = rng.integers(2, 9, 12).astype(np.int64)
    K = 6
    norms = gradient_norms(model, params, ids, K)
    inputs, targets = inputs_of(ids)[:, None], ids[:, None]
    n = len(ids)

    def loss(k, layer, unit, delta):
        """L<n> with h[layer]<n-k>_unit moved by delta."""
        state = model.initial_state(1, np.float64)
        if n - k:
            _, state = model.logprobs(params, inputs[: n - k], targets[: n - k], state)
        state = [tuple(a.copy() for a in s) for s in state]
        state[layer][0][0, unit] += delta
        if k == 0:
            return -model.head.target_logprobs(params, state[-1][0][None], targets[n - 1:])[0, 0]
        return -model.logprobs(params, inputs[n - k:], targets[n - k:], state)[0][-1, 0]

    eps = 1e-6
    for k in range(K + 1):
        numeric = [(loss(k, layer, j, eps) - loss(k, layer, j, -eps)) / (2 * eps)
                   for layer in range(2) for j in range(4)]
        assert norms[k] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-10), k
    assert len(norms) == K + 1
    assert len(gradient_norms(model, params, ids[:3], K)) == 4  # K is bounded by the text: h<0> is the start


@pytest.mark.parametrize("fixture", ["char_model", "word_model"])
def test_one_pass_gives_the_state_and_scores_the_others_compute(request, fixture):
    """The trace's own log-probabilities are score's (to float32 rounding), and the gradient chart
    started from the trace's state equals the one that reads its prefix itself."""
    from rnncli.inference.explain import passage, trace
    from rnncli.inference.score import score_ids
    from rnncli.training.request import load_model_checkpoint

    ck = load_model_checkpoint(str(request.getfixturevalue(fixture)), training_state=False)
    p = passage(ck, "The cook made a golden grape juice, and the apple and pear salad was sweet. " * 3, False)
    K = 20
    tr = trace(ck, p, cut=len(p.ids) - K)
    np.testing.assert_allclose(tr.logprobs, score_ids(ck, [p.ids])[0], atol=2e-5)
    model = Model(ck.model)
    np.testing.assert_allclose(gradient_norms(model, ck.params, p.ids, K, tr.state_at_cut),
                               gradient_norms(model, ck.params, p.ids, K), rtol=1e-4)


@pytest.mark.parametrize("cell, expected", [
    ("lstm", {"update": (0, 1), "forget": (1, 0), "output": (3, 0)}),
    ("gru", {"update": (0, 1), "relevance": (1, 0)}),
    ("gru-simple", {"update": (0, 0)}),
    ("gru-cudnn", {"update": (1, "1-"), "reset": (0, 0)}),
    ("rnn", {}),
])
def test_gates_are_the_cells_own(cell, expected):
    """At the first step (h<0> = 0) each gate is σ of its block of x W_x + b: the names point at the
    notes' gates (gru-cudnn's update gate is 1 - z)."""
    cfg = ModelConfig(cell=cell, vocab_size=9, embed=5, hidden=4, layers=1)
    rng = np.random.default_rng(0)
    model = Model(cfg)
    params = model.init_params(rng, np.float64)
    inputs = np.array([[1], [4]], np.int64)
    layers, _ = model.activations(params, inputs, model.initial_state(1, np.float64))
    gates = model.cell.gate_values(layers[0][1], 4)
    assert set(gates) == set(expected)
    pre = params["embed.weight"][1] @ params["layers.0.Wx"] + params["layers.0.b"]
    for name, (block, kind) in expected.items():
        want = sigmoid(pre[block * 4:(block + 1) * 4])
        got = gates[name][0, 0]
        np.testing.assert_allclose(got, 1 - want if kind == "1-" else want, atol=1e-12)
        assert gates[name].shape == (2, 1, 4)


def test_features_and_proposed_units():
    shown = list('He said "no way" (twice)\nok')
    f = text_features(shown)
    inside = "".join(c for c, q in zip(shown, f["inside quotes"], strict=True) if q)
    assert inside == "no way"
    assert "".join(c for c, q in zip(shown, f["inside brackets"], strict=True) if q) == "twice"
    assert f["position in the line"][shown.index("\n") + 1] == 0
    assert f["position in the line"][3] == 3
    assert f["inside a word"][0] == 1 and f["inside a word"][2] == 0
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(len(shown), 6)) * 0.1
    hidden[:, 4] += f["inside quotes"]
    hidden[:, 1] -= f["position in the line"] / 10
    proposed = {p["feature"]: p for p in propose_units(hidden, f)}
    assert proposed["inside quotes"]["unit"] == 4 and proposed["inside quotes"]["r"] > 0.9
    assert proposed["position in the line"]["unit"] == 1 and proposed["position in the line"]["r"] < -0.9
    units = [p["unit"] for p in proposed.values()]
    assert len(units) == len(set(units))  # each unit proposed once


def test_file_page_is_bounded(char_model, tmp_path):
    text = ("She said \"hello there\" and left.\n" * 200)[:5000]
    source = tmp_path / "long.txt"
    source.write_text(text, encoding="utf-8")
    page = tmp_path / "long.html"
    result = run_cli("explain", "--model", char_model, "--file", source, "-o", page, "--steps", "30")
    assert result.exit_code == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    parsed = Page(html)
    assert "".join(s for s, _ in parsed.passages[0]).replace("↵", "\n") == text
    assert parsed.unit_strips and all(n == STRIP_TOKENS for n in parsed.unit_strips)
    assert f"the first {STRIP_TOKENS:,} of {len(text):,} tokens" in html
    assert not re.search(r"<script|https?://", html)  # self-contained: nothing to run or fetch


def test_units_layer_compare_and_outputs(word_model, char_model, tmp_path, monkeypatch):
    data = explain_json(word_model, PEAR, "--units", "3,7", "--layer", "1", "--compare", char_model,
                        "--steps", "5")
    assert [u["unit"] for u in data["units"]] == [3, 7] and data["layer"] == 1
    assert set(data["passages"][0]["units"]) == {"3", "7"}
    assert len(data["passages"][0]["units"]["3"]) == data["passages"][0]["tokens"]
    assert set(data["passages"][0]["gates"][1]) == {"update", "forget", "output"}
    assert [len(m["norms"]) for m in data["gradient"]["models"]] == [6, 6]
    assert data["gradient"]["models"][1]["cell"] == "gru"
    monkeypatch.chdir(tmp_path)  # no -o: explain.html here; --json alone: no page
    assert not (tmp_path / "explain.html").exists()
    result = run_cli("explain", "--model", word_model, PEAR, "--compare", char_model)
    assert result.exit_code == 0, result.stderr
    assert "explain.html" in result.stderr
    assert Page((tmp_path / "explain.html").read_text(encoding="utf-8")).lines == ["model.npz", "model.npz"]
    both = explain_json(word_model, PEAR, "--compare", f"{char_model},{word_model}", "--steps", "3")
    assert [m["cell"] for m in both["gradient"]["models"]] == ["lstm", "gru", "lstm"]
    result = run_cli("explain", "--model", word_model, PEAR, "-o", "-")
    assert result.exit_code == 0 and result.stdout.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("args, message", [
    (["--layer", "3"], "--layer must be between 1 and 1"),
    (["--units", "48"], "no unit 48"),
    (["--units", "a,b"], "--units takes unit numbers"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["-o", "."], "is a directory"),
    ([], None),
])
def test_user_mistakes_are_one_line(char_model, args, message, tmp_path):
    if message is None:  # nothing to explain
        result = run_cli("explain", "--model", char_model)
        message = "nothing to explain"
    else:
        result = run_cli("explain", "--model", char_model, PEAR, *args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
