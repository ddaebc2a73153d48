"""`rnncli sample`: greedy, top-k, top-p, seeds, <UNK>, primes, beams, bad input."""

import json

import numpy as np
import pytest

from rnncli.formats.checkpoint import save_checkpoint
from rnncli.kernels.cells import CELL_NAMES
from rnncli.kernels.next_token import choose_token
from rnncli.kernels.two_cores import new_mailbox
from rnncli.models.model import Model
from rnncli.text.tokenizers import EOS, UNK
from rnncli.training.request import load_model_checkpoint as load_checkpoint
from tests.conftest import run_cli, use_cores


def settings(rows, temperature=0.9):
    """The generating kernel's per-row sampling settings: every row at `temperature`, no top-k or top-p."""
    from rnncli.config import SampleConfig
    from rnncli.inference.sample import row_settings

    return row_settings([SampleConfig(temperature=temperature)] * rows)


def sample_json(model, *args):
    result = run_cli("sample", "--model", model, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def test_greedy_follows_the_argmax_path(char_model):
    out = sample_json(char_model, "--temperature", "0", "--length", "40", "--prime", "The ")[0]
    ck = load_checkpoint(str(char_model))
    state = Model(ck.model).initial_state(1)
    prime = ck.tokenizer.encode("The ")
    logits = None
    for t in [EOS, *prime]:
        logits, state = Model(ck.model).step(ck.params, np.array([t]), state)
    expected = []
    for _ in range(40):
        lg = logits[0].copy()
        lg[UNK] = -np.inf
        token = int(np.argmax(lg))
        expected.append(token)
        logits, state = Model(ck.model).step(ck.params, np.array([token]), state)
    assert out["token_ids"] == expected
    assert out["text"] == "The " + ck.tokenizer.decode(expected)


def test_beam_of_width_one_is_greedy(char_model):
    greedy = sample_json(char_model, "--temperature", "0", "--length", "30")[0]
    beam = sample_json(char_model, "--beam", "1", "--length", "30")[0]
    assert beam["token_ids"] == greedy["token_ids"]


def test_beam_search_finds_a_likelier_continuation_than_sampling(char_model):
    beam = sample_json(char_model, "--beam", "4", "--length", "20")[0]
    sampled = sample_json(char_model, "--length", "20", "--seed", "3", "-n", "5")
    assert beam["logprob"] / 20 >= max(s["logprob"] / len(s["token_ids"]) for s in sampled) - 1e-9


def test_same_seed_same_bytes(char_model):
    args = ("sample", "--model", char_model, "--length", "80", "--temperature", "0.9", "--top-k", "10")
    a = run_cli(*args, "--seed", "5")
    b = run_cli(*args, "--seed", "5")
    c = run_cli(*args, "--seed", "6")
    assert a.exit_code == 0 and a.stdout == b.stdout
    assert a.stdout != c.stdout


@pytest.mark.parametrize("seed", range(5))
def test_top_k_never_leaves_the_k_best(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=30).astype(np.float32)
    k = 4
    best = set(np.argsort(-np.where(np.arange(30) == UNK, -np.inf, logits))[:k].tolist())
    chosen = {choose_token(logits, 1.0, k, 1.0, u)[0] for u in rng.random(2000)}
    assert chosen <= best and len(chosen) == k


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9])
def test_top_p_keeps_the_smallest_set_with_enough_mass(p):
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=25) * 2).astype(np.float32)
    logits[UNK] = 10.0  # very likely <UNK> must still never be chosen
    probs = np.exp(logits - logits.max())
    probs[UNK] = 0
    probs /= probs.sum()
    order = np.argsort(-probs)
    n = int(np.searchsorted(np.cumsum(probs[order]), p) + 1)
    nucleus = set(order[:n].tolist())
    assert probs[order[: n - 1]].sum() < p <= probs[order[:n]].sum() + 1e-12
    chosen = {choose_token(logits, 1.0, 0, p, u)[0] for u in np.linspace(0, 0.999999, 3000)}
    assert chosen == nucleus


def test_temperature_zero_and_unk_never_chosen():
    logits = np.array([50.0, 0.0, 1.0, 3.0], dtype=np.float32)  # <UNK> by far the most likely
    assert choose_token(logits, 0.0, 0, 1.0, 0.5)[0] == 3
    assert all(choose_token(logits, 1.0, 0, 1.0, u)[0] != UNK for u in np.linspace(0, 0.9999, 500))
    token, lp = choose_token(logits, 1.0, 0, 1.0, 0.0)
    assert lp == pytest.approx(float(logits[token] - np.log(np.exp(logits[1:].astype(np.float64)).sum())))


def test_unk_is_never_printed_even_when_the_model_prefers_it(char_model, tmp_path):
    ck = load_checkpoint(str(char_model))
    ck.params["output.b"][UNK] = 30.0  # make <UNK> overwhelmingly likely
    biased = tmp_path / "biased.npz"
    save_checkpoint(str(biased), ck)
    result = run_cli("sample", "--model", biased, "--length", "200", "--seed", "1")
    assert result.exit_code == 0
    assert "<UNK>" not in result.stdout and len(result.stdout) > 100


def test_prime_with_unknown_characters_warns_and_continues(char_model):
    result = run_cli("sample", "--model", char_model, "--prime", "Zebra ☃ ", "--length", "20", "--seed", "1")
    assert result.exit_code == 0
    assert result.stdout.startswith("Zebra ☃ ")
    assert "warning" in result.stderr and "<UNK>" in result.stderr


def test_until_eos_and_stop_string(char_model):
    out = sample_json(char_model, "--until-eos", "--length", "400", "--seed", "2")[0]
    assert out["token_ids"][-1] == EOS and out["token_ids"].count(EOS) == 1
    out = sample_json(char_model, "--stop", "e", "--length", "400", "--seed", "2")[0]
    assert out["continuation"].endswith("e") and out["continuation"].count("e") == 1
    ck = load_checkpoint(str(char_model))
    assert ck.tokenizer.decode(out["token_ids"]) == out["continuation"]  # tokens end where the text does
    assert out["tokens"] == len(out["token_ids"])


def test_streamed_text_equals_the_decoded_tokens(word_model):
    out = sample_json(word_model, "--prime", "The plum", "--length", "300", "--seed", "4")[0]
    ck = load_checkpoint(str(word_model))
    prime_ids = ck.tokenizer.encode("The plum")[:-1]
    whole = ck.tokenizer.decode(list(prime_ids) + out["token_ids"])
    assert out["text"] == "The plum" + whole[len(ck.tokenizer.decode(prime_ids)):]


def test_num_samples_and_json_shape(char_model):
    samples = sample_json(char_model, "-n", "3", "--length", "15", "--seed", "4")
    assert len(samples) == 3
    for s in samples:
        assert set(s) >= {"text", "tokens", "logprob"} and s["tokens"] == 15 and s["logprob"] < 0
    assert len({s["text"] for s in samples}) > 1


def test_many_samples_are_reproducible_and_each_ends_on_its_own(char_model):
    args = ("-n", "6", "--length", "60", "--seed", "9", "--temperature", "1.2")
    first, again = sample_json(char_model, *args), sample_json(char_model, *args)
    assert first == again and len({s["text"] for s in first}) == 6
    lines = sample_json(char_model, *args, "--until-eos")
    for s in lines:  # each sample stops at its own first newline, or runs to the length
        assert "\n" not in s["text"][:-1]
        assert s["text"].endswith("\n") or s["tokens"] == 60
        assert s["token_ids"].count(EOS) == (1 if s["text"].endswith("\n") else 0)
    stopped = sample_json(char_model, *args, "--stop", "e")
    for s in stopped:
        assert s["text"].count("e") <= 1 and (s["text"].endswith("e") or s["tokens"] == 60)
    plain = run_cli("sample", "--model", char_model, *args)  # text: the samples in order, a blank line between
    assert plain.exit_code == 0
    assert plain.stdout == "\n\n".join(s["text"].rstrip("\n") for s in first) + "\n"


def test_beam_gives_its_best_hypotheses(char_model):
    best = sample_json(char_model, "--beam", "5", "--length", "12", "-n", "3")
    assert len(best) == 3 and len({tuple(s["token_ids"]) for s in best}) == 3
    scores = [s["logprob"] / len(s["token_ids"]) for s in best]
    assert scores == sorted(scores, reverse=True)
    assert best[0] == sample_json(char_model, "--beam", "5", "--length", "12")[0]
    result = run_cli("sample", "--model", char_model, "--beam", "2", "-n", "3")
    assert result.exit_code == 2 and "at most 2" in result.stderr


def test_word_model_samples_words(word_model):
    out = sample_json(word_model, "--prime", "The apple", "--length", "12", "--seed", "1")[0]
    assert out["text"].startswith("The apple") and len(out["text"].split()) >= 5


@pytest.mark.parametrize("args, message", [
    (("--temperature", "-1"), "--temperature"),
    (("--top-p", "0"), "--top-p"),
    (("--top-p", "1.5"), "--top-p"),
    (("--top-k", "-1"), "--top-k"),
    (("--length", "-3"), "--length"),
])
def test_bad_options(char_model, args, message):
    result = run_cli("sample", "--model", char_model, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_missing_and_broken_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNNCLI_MODEL", raising=False)
    result = run_cli("sample")
    assert result.exit_code == 2 and "rnncli train" in result.stderr
    assert run_cli("sample", "--model", "nope.npz").exit_code == 2
    (tmp_path / "bad.npz").write_text("hello")
    result = run_cli("sample", "--model", "bad.npz")
    assert result.exit_code == 1 and "not an rnncli" in result.stderr


def test_rnncli_model_environment_variable(char_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNCLI_MODEL", str(char_model))
    result = run_cli("sample", "--length", "10", "--seed", "1")
    assert result.exit_code == 0 and len(result.stdout) >= 10


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_generation_kernel_matches_the_model_for_every_cell(cell):
    """Greedy generation through the cell's single step picks, at every position, the argmax of
    the distribution the chunk kernels compute for the same text."""
    from rnncli.config import ModelConfig
    from rnncli.kernels.generate import generate

    cfg = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=8, layers=2)
    model = Model(cfg)
    rng = np.random.default_rng(0)
    params = {k: (v * 3).astype(np.float32) for k, v in model.init_params(rng).items()}  # lively weights
    prime = np.array([EOS, 4, 7, 2], dtype=np.int64)
    weights = model.step_weights(params)
    h, c = model.step_state(model.initial_state(1))
    out, lps = np.empty((1, 12), np.int64), np.empty((1, 12))
    generate(*weights, h, c, prime[:, None], np.zeros((1, 12)), *settings(1, 0.0), False, np.zeros(1, np.bool_), out,
             lps)
    out = out[0]
    fed = np.concatenate([prime, out[:-1]])[:, None]  # (T, 1)
    logprobs, _ = model.next_token_logprobs(params, fed, model.initial_state(1))
    expected = []
    for t in range(len(prime) - 1, len(fed)):
        lg = logprobs[t, 0].astype(np.float64)
        lg[UNK] = -np.inf
        expected.append(int(np.argmax(lg)))
    assert out.tolist() == expected


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_samples_side_by_side_are_the_samples_one_by_one(cell):
    """Row b of a batched generation is what batch 1 generates from row b's context and uniforms
    (the batched step is the same maths); a row that reached <EOS> stops counting, and the call
    returns once every row has. Each row may have its own temperature, top-k and top-p."""
    from rnncli.config import ModelConfig, SampleConfig
    from rnncli.inference.sample import row_settings
    from rnncli.kernels.generate import generate

    cfg = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=8, layers=2)
    model = Model(cfg)
    rng = np.random.default_rng(1)
    params = {k: (v * 3).astype(np.float32) for k, v in model.init_params(rng).items()}
    weights = model.step_weights(params)
    contexts = np.array([[EOS, EOS, EOS, EOS], [4, 7, 2, 9], [3, 3, 5, 10]])  # (T, N): a column per row
    uniforms = rng.random((4, 20))
    h, c = model.step_state(model.initial_state(4))
    together, lps = np.empty((4, 20), np.int64), np.empty((4, 20))
    configs = [SampleConfig(temperature=0.9), SampleConfig(temperature=0.0), SampleConfig(temperature=1.3, top_k=3),
               SampleConfig(temperature=0.7, top_p=0.8)]  # each row its own settings (a server's requests)
    got = generate(*weights, h, c, contexts, uniforms, *row_settings(configs), False, np.zeros(4, np.bool_), together,
                   lps)
    assert got == 20
    for b in range(4):
        h1, c1 = model.step_state(model.initial_state(1))
        alone, lps1 = np.empty((1, 20), np.int64), np.empty((1, 20))
        generate(*weights, h1, c1, contexts[:, b:b + 1], uniforms[b:b + 1], *row_settings(configs[b:b + 1]), False,
                 np.zeros(1, np.bool_), alone, lps1)
        assert together[b].tolist() == alone[0].tolist()
        np.testing.assert_allclose(lps[b], lps1[0], rtol=1e-4, atol=1e-5)
    finished = np.zeros(4, np.bool_)
    h, c = model.step_state(model.initial_state(4))
    got = generate(*weights, h, c, contexts, uniforms, *settings(4), True, finished, together, lps)
    ends = [list(row[:got]).index(EOS) if EOS in row[:got] else None for row in together]
    assert finished.tolist() == [e is not None for e in ends]
    assert got == 20 or (all(finished) and got == max(ends) + 1)


@pytest.mark.parametrize("n", [1, 2, 7, 65, 1000])
def test_descending_order_is_a_stable_sort_from_largest_to_smallest(n):
    from rnncli.kernels.next_token import _descending_order

    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), 2)  # with ties
    order = _descending_order(p)
    assert order.tolist() == np.argsort(-p, kind="stable").tolist()  # ties: the smaller index first


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_a_row_steps_to_the_same_bytes_alone_beside_others_or_shared(cell):
    """The single step's products run in our packed kernel (one row: its one-row form; the cells
    that can, one product over [x, h] against [Wx; Wh] per layer), or shared with a helper
    (two_cores.py, here computed whole by the step): the same logits and states as the chunk
    kernels (model.next_token_logprobs) in float64 to the last bits' error, and for every row the
    same bytes whether it steps alone, beside 1 or 8 others, or shared."""
    from rnncli.config import ModelConfig

    cfg = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=40, layers=2)  # 4H = 160: blocks cut short
    model = Model(cfg)
    rng = np.random.default_rng(2)
    params = model.init_params(rng, np.float64)
    packed = model.step_weights(params)
    shared = model.step_weights(params, packed=new_mailbox())  # rows shared with a helper (none runs here)
    fused = "WxhR" in packed[0]._fields
    assert fused == (cell not in ("gru", "gru-cudnn"))  # one product over [x, h] where the maths allows
    first = packed[0].Wx0
    assert len(first) == 2 and len(packed[2]) == 2  # every matrix held as (W, packed W) on one core ...
    assert len(shared[0].Wx0) == 3 and len(shared[2]) == 3  # ... + the mailbox
    tokens = rng.integers(0, 11, 9)
    state = [tuple(rng.normal(size=a.shape) for a in layer) for layer in model.initial_state(9, np.float64)]
    logits, s1 = model.step(params, tokens, state, weights=packed)
    logprobs, s_chunk = model.next_token_logprobs(params, tokens[None, :], state)
    lg = logits - logits.max(axis=1, keepdims=True)
    np.testing.assert_allclose(lg - np.log(np.exp(lg).sum(axis=1, keepdims=True)), logprobs[0], rtol=1e-12,
                               atol=1e-12)
    for a, b in zip(s1, s_chunk, strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-12)
    for rows in (slice(0, 9), slice(3, 5), slice(6, 7)):
        part = [tuple(np.ascontiguousarray(a[rows]) for a in layer) for layer in state]
        for weights in (packed, shared):
            logits2, s2 = model.step(params, tokens[rows], part, weights=weights)
            np.testing.assert_array_equal(logits2, logits[rows])
            for a, b in zip(s1, s2, strict=True):
                np.testing.assert_array_equal(a[0][rows], b[0])


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_a_table_of_the_first_layers_input_products_gives_the_same_bytes(cell, monkeypatch):
    """Where it pays (a character vocabulary) the single step looks the first layer's input product
    x<t> @ Wx up in a table of every token's (recurrent.inputs_table) instead of computing it: the
    same logits and states, bit for bit, for one row or several, on one core or shared; a word-size
    vocabulary, whose table would cost more steps than it saves, keeps computing it."""
    from rnncli.config import ModelConfig
    from rnncli.kernels import recurrent

    for dtype in (np.float32, np.float64):
        model = Model(ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=40, layers=2))
        rng = np.random.default_rng(7)
        params = model.init_params(rng, dtype)
        for form in (True, new_mailbox()):
            table = model.step_weights(params, packed=form)
            with monkeypatch.context() as m:
                m.setattr(recurrent, "TABLE_PAYS_WITHIN", 0)
                computed = model.step_weights(params, packed=form)
            assert table[0].Wx0[0].shape == (0, 40 * model.cell.gates) and table[1].shape == (11, 40 * model.cell.gates)
            assert computed[0].Wx0[0].shape == (6, 40 * model.cell.gates) and computed[1].shape == (11, 6)
            for rows in (1, 5):
                tokens = rng.integers(0, 11, rows)
                state = [tuple(rng.normal(size=a.shape).astype(dtype) for a in layer)
                         for layer in model.initial_state(rows, dtype)]
                logits, s1 = model.step(params, tokens, state, weights=table)
                logits2, s2 = model.step(params, tokens, state, weights=computed)
                assert logits.tobytes() == logits2.tobytes()
                for a, b in zip(s1, s2, strict=True):
                    assert a[0].tobytes() == b[0].tobytes()
    words = Model(ModelConfig(cell=cell, vocab_size=5000, embed=64, hidden=32, layers=1))
    weights = words.step_weights(words.init_params(np.random.default_rng(0)))
    assert weights[1].shape == (5000, 64) and weights[0].Wx0[0].shape == (64, 32 * words.cell.gates)


@pytest.mark.parametrize("cell", ["lstm", "gru-cudnn"])
def test_samples_in_shards_are_the_samples_of_one_batch(cell, monkeypatch):
    """64 samples as two shards of 32 rows, one per core, give the bytes of one batch of 64, each row
    from its own uniforms; a shard whose rows all ended stops early and its rows read <EOS> from
    there."""
    from rnncli.config import ModelConfig
    from rnncli.execution.steps import Steps

    cfg = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=40, layers=2)
    model = Model(cfg)
    rng = np.random.default_rng(3)
    params = {k: (v * 3).astype(np.float32) for k, v in model.init_params(rng).items()}
    N, n = 64, 30
    use_cores(monkeypatch, 2)
    in_shards = Steps(model, params, N, n)
    assert in_shards.shards == [slice(0, 32), slice(32, 64)] and in_shards.mailbox is None
    use_cores(monkeypatch, 1)
    whole = Steps(model, params, N, n)
    assert whole.shards == [] and whole.mailbox is None
    context = np.full((1, N), EOS)
    uniforms = rng.random((N, n))
    results = []
    for steps in (in_shards, whole):
        h, c = model.step_state(model.initial_state(N))
        out, lps = np.empty((N, n), np.int64), np.empty((N, n))
        got = steps.generate(h, c, context, uniforms, *settings(N), False, np.zeros(N, np.bool_), out, lps)
        results.append((got, out, lps, h))
    (got, out, lps, h), (got2, out2, lps2, h2) = results
    assert got == got2 == n and out.tolist() == out2.tolist()
    np.testing.assert_array_equal(lps, lps2)
    np.testing.assert_array_equal(h, h2)  # each shard's state written back
    finished = np.zeros(N, np.bool_)
    finished[:32] = True  # the first shard's rows have all ended: it stops after one step
    h, c = model.step_state(model.initial_state(N))
    out = np.full((N, n), -1, np.int64)
    got = in_shards.generate(h, c, context, uniforms, *settings(len(finished)), True, finished, out, lps)
    assert got > 1 and (out[:32, 1:got] == EOS).all()


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_one_sample_on_two_cores_is_the_sample_on_one(cell, monkeypatch):
    """One sample with each product shared by both cores (the helper serving beside the generating
    kernel, two_cores.py; the layers' matrices large enough to share) gives the bytes of the step on
    one core, from the same uniforms; the helper computed its halves and was stopped."""
    from rnncli.config import ModelConfig
    from rnncli.execution.steps import HELPER_MIN_STEPS, Steps
    from rnncli.kernels import two_cores

    model = Model(ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=384, layers=2))
    rng = np.random.default_rng(4)
    params = model.init_params(rng, np.float32)
    assert params["layers.1.Wx"].nbytes >= two_cores.SHARED_MIN_BYTES
    two_cores.compile_helper(np.float32)  # as make install does
    use_cores(monkeypatch, 2)
    shared = Steps(model, params, 1, HELPER_MIN_STEPS[1])
    assert shared.mailbox is not None  # one long sample on two cores: shared with the helper
    use_cores(monkeypatch, 1)
    alone = Steps(model, params, 1, HELPER_MIN_STEPS[1])
    assert alone.mailbox is None and alone.shards == []
    n = 60
    uniforms = rng.random((1, n))
    results = []
    for steps in (shared, alone):
        h, c = model.step_state(model.initial_state(1))
        out, lps = np.empty((1, n), np.int64), np.empty((1, n))
        got = steps.generate(h, c, np.array([[EOS, 3, 4]]).T, uniforms, *settings(1), False, np.zeros(1, np.bool_),
                             out, lps)
        results.append((got, out, lps, h))
    (got, out, lps, h), (got2, out2, lps2, h2) = results
    assert got == got2 == n and out.tolist() == out2.tolist()
    np.testing.assert_array_equal(lps, lps2)
    np.testing.assert_array_equal(h, h2)
    assert shared.mailbox[two_cores.STOP] == 1 and shared.mailbox[two_cores.POSTED] > 0


def test_one_sample_runs_on_two_cores_only_where_that_pays(monkeypatch):
    """`step_form`: up to a tile's rows (4), the helper for a long enough sample of a model with a
    matrix worth sharing, once the helper's kernel is compiled; a beam with the helper at any width
    and length; else packed weights on one core (in shards for many rows)."""
    from rnncli.config import ModelConfig
    from rnncli.execution import steps
    from rnncli.kernels import two_cores

    use_cores(monkeypatch, 2)
    monkeypatch.setattr(two_cores, "helper_compiled", lambda dtype: True)
    rng = np.random.default_rng(5)
    large = Model(ModelConfig(cell="lstm", vocab_size=11, embed=6, hidden=256, layers=1)).init_params(rng, np.float32)
    small = Model(ModelConfig(cell="lstm", vocab_size=11, embed=6, hidden=128, layers=1)).init_params(rng, np.float32)
    long = steps.HELPER_MIN_STEPS[1]
    shared = lambda packing: isinstance(packing, np.ndarray)  # noqa: E731 - a mailbox
    assert shared(steps.step_form(1, long, large))
    assert shared(steps.step_form(3, long, large)) and shared(steps.step_form(4, 200, large))  # a few rows
    assert steps.step_form(1, long - 1, large) is True  # a short sample does not repay the start
    assert shared(steps.step_form(2, steps.HELPER_MIN_STEPS[2], large))  # two rows: sooner
    assert steps.step_form(1, long, small) is True  # 1 x 128: faster on one core
    assert steps.step_form(5, 200, large) is True  # shards from 5 rows
    assert steps.step_form(64, 200, small) is True and steps.step_form(15, 200, small) is True
    assert shared(steps.step_form(64, 10, large, beam=True)) and shared(steps.step_form(2, 10, large, beam=True))
    assert steps.step_form(8, 10, small, beam=True) is True and steps.step_form(2, 10, small, beam=True) is True
    use_cores(monkeypatch, 1)
    assert steps.step_form(1, long, large) is True  # one core
    assert steps.step_form(8, 10, large, beam=True) is True
    use_cores(monkeypatch, 2)
    monkeypatch.setattr(two_cores, "helper_compiled", lambda dtype: False)
    assert steps.step_form(1, long, large) is True  # a cold cache: one core (a first sample's start)
    assert steps.step_form(8, 10, large, beam=True) is True


def _beam_walk(logits, scores, width, until_eos):
    """The beam's step as the docstring of `beam_candidates` tells it, one candidate at a time."""
    lp = logits.astype(np.float64)  # tied logits in a row give tied log-probabilities here and in the kernel
    lp -= lp.max(axis=1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
    lp[:, UNK] = -np.inf
    candidates = []  # (total, b, rank, token): each hypothesis's `width` likeliest tokens
    for b in range(lp.shape[0]):
        for rank, token in enumerate(np.argsort(-lp[b], kind="stable")[:width]):
            candidates.append((scores[b] + lp[b, token], b, rank, int(token)))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    ending, extending = [], []
    for total, b, _, token in candidates:
        if until_eos and token == EOS:
            ending.append((b, total))
        elif len(extending) < width:
            extending.append((b, token, total))
        if len(extending) >= width and len(ending) >= width:
            break
    return ending, extending


@pytest.mark.parametrize("until_eos", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_the_beams_choice_walks_the_candidates_in_order(until_eos, seed):
    """`beam_candidates` against the walk it stands for, one candidate at a time: each hypothesis
    proposes its `width` likeliest tokens (never <UNK>), <EOS> ends a hypothesis (with until_eos),
    anything else extends one until `width` do, and the walk stops once both have `width`. Ties
    (rounded logits and scores) are broken by hypothesis, then token; a likely <EOS> makes long walks."""
    from rnncli.kernels.generate import beam_candidates

    rng = np.random.default_rng(seed)
    W, V = int(rng.integers(1, 12)), int(rng.integers(3, 40))
    width = int(rng.integers(1, V))
    logits = np.round(rng.normal(size=(W, V)) * 2, int(rng.integers(0, 3))).astype(np.float32)
    if seed % 2:
        logits[:, EOS] += 3
    scores = np.round(rng.normal(size=W), int(rng.integers(0, 2)))
    ending, extending = _beam_walk(logits, scores, width, until_eos)
    ending_rows, ending_totals, rows, tokens, totals = beam_candidates(logits, scores, width, until_eos)
    assert ending_rows.tolist() == [b for b, _ in ending]
    assert list(zip(rows.tolist(), tokens.tolist(), strict=True)) == [(b, token) for b, token, _ in extending]
    np.testing.assert_allclose(ending_totals, [total for _, total in ending], atol=1e-12)  # (log-softmax sums
    np.testing.assert_allclose(totals, [total for _, _, total in extending], atol=1e-12)  # in another order)


def test_a_wide_beam_without_a_helper_steps_on_one_core(monkeypatch):
    """A beam of 16 of a model too small to share with a helper steps its rows on one core even with
    two (it steps from Python: handing rows to the other core and back at every step costs more than
    the step), packed, and ends with the hypotheses of one BLAS thread."""
    import rnncli.execution.cores as cores
    import rnncli.kernels.blas as blas
    from rnncli.config import ModelConfig, SampleConfig
    from rnncli.execution import steps
    from rnncli.inference.sample import beam_search_nbest

    cfg = ModelConfig(cell="lstm", vocab_size=30, embed=6, hidden=40, layers=2)
    model = Model(cfg)
    params = {k: (v * 3).astype(np.float32) for k, v in model.init_params(np.random.default_rng(4)).items()}
    config = SampleConfig(length=12, beam=16, until_eos=True)
    handed = []

    def one_after_the_other(work, items):
        handed.append(len(items))
        return [work(item) for item in items]

    monkeypatch.setattr(blas, "on_each_core", one_after_the_other)
    monkeypatch.setattr(cores, "on_each_core", one_after_the_other)
    cores.on_cores(lambda item: item, [1, 2])  # (what a step in shards would call)
    assert handed == [2]
    handed.clear()
    found = []
    for threads in (2, 1):
        use_cores(monkeypatch, threads)
        assert steps.step_form(16, 12, params, beam=True) is True
        found.append(beam_search_nbest(model, params, model.initial_state(1), np.array([EOS, 5, 7]), config))
    two, one = found
    assert handed == []  # no step handed to another core
    assert [tokens for tokens, _ in two] == [tokens for tokens, _ in one] and len(two) >= 16
    np.testing.assert_allclose([s for _, s in two], [s for _, s in one], rtol=1e-5)


def test_a_beam_with_the_helper_finds_the_hypotheses_of_one_core(monkeypatch):
    """A beam of a model with a matrix worth sharing runs every step's products on both cores (a
    helper on the second computing half of each product's blocks, for all the hypotheses at once),
    and ends with the hypotheses of the beam stepped on one core."""
    from rnncli.config import ModelConfig, SampleConfig
    from rnncli.execution import steps
    from rnncli.inference.sample import beam_search_nbest
    from rnncli.kernels import two_cores

    cfg = ModelConfig(cell="lstm", vocab_size=30, embed=6, hidden=256, layers=1)
    model = Model(cfg)
    params = {k: (v * 3).astype(np.float32) for k, v in model.init_params(np.random.default_rng(4)).items()}
    config = SampleConfig(length=12, beam=6, until_eos=True)
    monkeypatch.setattr(two_cores, "helper_compiled", lambda dtype: True)
    mailboxes = []
    serve = two_cores.serve

    def serve_and_keep(mailbox, like):
        mailboxes.append(mailbox)
        serve(mailbox, like)

    monkeypatch.setattr(two_cores, "serve", serve_and_keep)
    found = []
    for threads in (2, 1):
        use_cores(monkeypatch, threads)
        assert isinstance(steps.step_form(6, 12, params, beam=True), np.ndarray) == (threads == 2)
        found.append(beam_search_nbest(model, params, model.initial_state(1), np.array([EOS, 5, 7]), config))
    shared, alone = found
    assert len(mailboxes) == 1 and mailboxes[0][two_cores.POSTED] > 0  # products posted for the helper (which
    # halves it computed depends on timing: on a cold cache it gives up while the step compiles)
    assert [tokens for tokens, _ in shared] == [tokens for tokens, _ in alone] and len(shared) >= 6
    np.testing.assert_allclose([s for _, s in shared], [s for _, s in alone], rtol=1e-5)


def test_verbose_says_how_the_samples_run(char_model, monkeypatch):
    from rnncli.execution import steps

    use_cores(monkeypatch, 2)
    many = run_cli("sample", "--model", char_model, "-n", "20", "--length", "3", "--verbose", "--seed", "1")
    assert many.exit_code == 0, many.stderr
    assert "20 rows at a time, 2 shards of 10+ rows, one per core" in many.stderr
    few = run_cli("sample", "--model", char_model, "-n", "5", "--length", "3", "--verbose", "--seed", "1")
    assert few.exit_code == 0, few.stderr
    assert "5 rows at a time, 2 shards of 2+ rows, one per core" in few.stderr
    use_cores(monkeypatch, 1)
    alone = run_cli("sample", "--model", char_model, "-n", "6", "--length", "3", "--verbose", "--seed", "1")
    assert "6 rows at a time, on one core, the products in rnncli's packed kernel" in alone.stderr
    use_cores(monkeypatch, 2)
    one = run_cli("sample", "--model", char_model, "--length", "3", "--verbose", "--seed", "1")
    assert "1 row at a time, on one core, the products in rnncli's packed kernel" in one.stderr
    monkeypatch.setattr(steps, "HELPER_MIN_STEPS", (0, 5, 5, 5))  # a "long" sample, a "large" model, compiled
    monkeypatch.setattr("rnncli.kernels.two_cores.SHARED_MIN_BYTES", 0)
    monkeypatch.setattr("rnncli.kernels.two_cores.helper_compiled", lambda dtype: True)
    long = run_cli("sample", "--model", char_model, "--length", "40", "--verbose", "--seed", "1")
    assert long.exit_code == 0, long.stderr
    assert "1 row(s) at a time, the products of 512 KB or more shared by both cores" in long.stderr
    monkeypatch.setattr("rnncli.kernels.two_cores.helper_compiled", lambda dtype: False)
    assert long.stdout == run_cli("sample", "--model", char_model, "--length", "40", "--seed", "1").stdout  # one core


def test_once_the_helper_ran_a_short_sample_shares_it_too(monkeypatch):
    """The helper's start is its kernels' load, once per process: after a cell's steps ran with it,
    a sample of a few dozen tokens shares its products too (steps.HELPER_MIN_STEPS_WARM), and the
    samples are the same bytes either way."""
    from rnncli.config import ModelConfig
    from rnncli.execution import steps
    from rnncli.kernels import two_cores

    monkeypatch.setattr(steps, "_helper_ran", set())
    model = Model(ModelConfig(cell="lstm", vocab_size=11, embed=6, hidden=384, layers=1))
    rng = np.random.default_rng(6)
    params = model.init_params(rng, np.float32)
    two_cores.compile_helper(np.float32)
    use_cores(monkeypatch, 2)
    n = 40
    assert steps.Steps(model, params, 1, n).mailbox is None  # a cold process: one core
    uniforms = rng.random((1, n))
    outs = []
    for which in ("long", "short"):
        run = steps.Steps(model, params, 1, steps.HELPER_MIN_STEPS[1] if which == "long" else n)
        assert run.mailbox is not None
        h, c = model.step_state(model.initial_state(1))
        out, lps = np.empty((1, n), np.int64), np.empty((1, n))
        got = run.generate(h, c, np.array([[EOS]]), uniforms, *settings(1), False, np.zeros(1, np.bool_), out, lps)
        assert got == n
        outs.append((out.tolist(), lps.tolist()))
    assert outs[0] == outs[1]
    assert steps.Steps(model, params, 1, steps.HELPER_MIN_STEPS_WARM - 1).mailbox is None  # too short still
