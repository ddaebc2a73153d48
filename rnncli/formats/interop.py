"""Models that travel: an rnncli model as PyTorch's modules name and lay out their parameters,
and back. A language model:

    embedding.weight      (V, D)       nn.Embedding                  = rnncli embed.weight
    rnn.weight_ih_l{l}    (G*H, D|H)   nn.LSTM / nn.GRU / nn.RNN     = layers.{l}.Wx transposed
    rnn.weight_hh_l{l}    (G*H, H)                                   = layers.{l}.Wh transposed
    rnn.bias_ih_l{l}      (G*H,)                                     = layers.{l}.b
    rnn.bias_hh_l{l}      (G*H,)                                     = 0, but gru-cudnn's n block: layers.{l}.bhn
    decoder.weight        (V, H)       nn.Linear                     = output.W transposed (E when tied)
    decoder.bias          (V,)                                       = output.b
    decoder.head.weight, decoder.head.bias, decoder.tail.{i}.0.weight, decoder.tail.{i}.1.weight:
                                       nn.AdaptiveLogSoftmaxWithLoss = an adaptive softmax's (models/adaptive.py)

A bidirectional layer's reversed twin (layers.{l}.reverse.*) is the module's `_reverse` weights
(`rnn.weight_ih_l{l}_reverse`, ...). Task models: a classifier or tagger's output layer is
`output.weight`/`output.bias` (labels x 2H when bidirectional); a translator's encoder is `rnn.*`
with `embedding.weight`, its decoder `decoder_rnn.*` with `decoder_embedding.weight`, and its output
layer `output.weight`/`output.bias`.

rnncli's gate orders are PyTorch's ([i, f, g, o] for the lstm, [r, z, n] for gru-cudnn), so no
block moves. The cells PyTorch's modules cannot express are refused: the notes' gru (its reset
gate acts before the product), gru-simple and lstm-peephole. The file is safetensors (no torch
needed to write or read it; `torch.load` is never used on what a user downloads, so no pickle);
its metadata carries the model's configuration and the tokenizer, so that the export is usable on
its own and `rnncli import` needs nothing else for it.
"""

from __future__ import annotations

import json
import re

import numpy as np

from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig, from_dict, to_dict
from rnncli.errors import RnncliError, UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.kernels.cells import CELL_NAMES, get_cell
from rnncli.tasks import check_model, get_task


def torch_module(cell: str) -> str:
    """PyTorch's module for `cell`, as the cell says (Cell.torch_module in kernels/); refused, with the
    cell's reason, for a cell PyTorch's modules cannot express."""
    c = get_cell(cell)
    if c.torch_module is None:
        raise UsageError(f"a {cell} model cannot be exported for PyTorch: {c.not_in_torch}")
    return c.torch_module


def tokenizer_metadata(tokenizer, config: TokenizerConfig) -> dict[str, str]:
    """The tokenizer as text: its level and settings, the vocabulary (id order), the sentencepiece
    model (hex) for subword tokenizers."""
    meta = {"tokenizer_config": json.dumps(to_dict(config)), "vocabulary": json.dumps(tokenizer.vocab)}
    if tokenizer.level == "subword":
        meta["sentencepiece_model"] = tokenizer.model.hex()
    return meta


def tokenizer_document(tokenizer, config: TokenizerConfig) -> dict:
    """The tokenizer beside an ONNX export (`<model>.tokenizer.json`), plain JSON for a script to
    read: the vocabulary in id order (a token's id is its position; `unk_id`, `eos_id`), how text is
    cut (`level`; a word model's `split`, its `word_pattern` for `"words"`, `lowercase`; `blank_lines`),
    the sentencepiece model (hex) of a subword one, and the configuration it was fitted with."""
    from rnncli.text.tokenizers import EOS, UNK, WORD_PATTERN

    doc = {"format": "rnncli-tokenizer-1", "level": tokenizer.level, "vocabulary": list(tokenizer.vocab),
           "unk_id": UNK, "eos_id": EOS, **{k: v for k, v in to_dict(tokenizer.config()).items()
                                            if k in ("lowercase", "split", "blank_lines")},
           "config": to_dict(config)}
    if tokenizer.level == "word" and doc["split"] == "words":
        doc["word_pattern"] = WORD_PATTERN.pattern
    if tokenizer.level == "subword":
        doc["sentencepiece_model"] = tokenizer.model.hex()
    return doc


def tokenizer_from_metadata(meta: dict[str, str]):
    from rnncli.formats.schema import ListOf, check
    from rnncli.text.tokenizers import tokenizer_from_arrays

    config = from_dict(TokenizerConfig, json.loads(meta["tokenizer_config"]))
    vocabulary = json.loads(meta["vocabulary"])
    check(vocabulary, ListOf(str), "its metadata", "vocabulary")
    arrays = {"level": np.array(config.level), "vocab": np.array(vocabulary, dtype=np.str_),
              "lowercase": np.array(config.lowercase), "split": np.array(config.split),
              "blank_lines": np.array(config.blank_lines)}
    if "sentencepiece_model" in meta:
        arrays["spm_model"] = np.frombuffer(bytes.fromhex(meta["sentencepiece_model"]), np.uint8)
    return tokenizer_from_arrays(arrays), config


def _stacks(m: ModelConfig) -> list[tuple[str, str, int]]:
    """(rnncli prefix, PyTorch module name, directions) of each recurrent stack of a model."""
    return [(prefix, module, 2 if m.bidirectional and both_ways else 1)
            for prefix, module, both_ways in get_task(m.task).stacks()]


def _heads(m: ModelConfig) -> list[tuple[str, str]]:
    """(rnncli name, PyTorch name) of the embeddings and the output layer; W matrices transpose."""
    return get_task(m.task).torch_names(m)


def _layers(m: ModelConfig):
    """(rnncli prefix, PyTorch suffix, module) of every recurrent layer: layers.{l}.[reverse.] and
    _l{l}[_reverse]."""
    for prefix, module, directions in _stacks(m):
        for level in range(m.layers):
            for d in range(directions):
                yield (f"{prefix}layers.{level}." + ("reverse." if d else ""),
                       f"_l{level}" + ("_reverse" if d else ""), module)


def to_torch(ck: Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The checkpoint's weights under PyTorch's names, and its configuration and tokenizer as text."""
    m = ck.model
    torch_name = torch_module(m.cell)
    p = ck.params
    tensors = {}
    for ours, theirs in _heads(m):
        if ours == "output.W" and m.tie_weights:
            tensors[theirs] = p["embed.weight"]
        else:
            tensors[theirs] = p[ours].T if ours.endswith(".W") else p[ours]
    for q, suffix, module in _layers(m):
        GH = p[q + "b"].shape[0]
        tensors[f"{module}.weight_ih{suffix}"] = p[q + "Wx"].T
        tensors[f"{module}.weight_hh{suffix}"] = p[q + "Wh"].T
        tensors[f"{module}.bias_ih{suffix}"] = p[q + "b"]
        bias_hh = np.zeros(GH, p[q + "b"].dtype)
        if m.cell == "gru-cudnn":
            bias_hh[2 * m.hidden :] = p[q + "bhn"]  # b_hn sits inside the reset gate's product
        tensors[f"{module}.bias_hh{suffix}"] = bias_hh
    torch_name += " (bidirectional=True)" if m.bidirectional else ""
    metadata = {"format": "rnncli-torch-1", "model_config": json.dumps(to_dict(m)), "torch_module": torch_name,
                **tokenizer_metadata(ck.tokenizer, ck.tokenizer_config)}
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata


def _layer_from_torch(cell: str, parts: dict[str, np.ndarray], H: int) -> dict[str, np.ndarray]:
    """One layer's weight_ih, weight_hh[, bias_ih, bias_hh] as rnncli's Wx, Wh, b[, bhn]."""
    GH = parts["weight_ih"].shape[0]
    bias_ih = parts.get("bias_ih", np.zeros(GH, np.float32))
    bias_hh = parts.get("bias_hh", np.zeros(GH, np.float32))
    out = {"Wx": np.ascontiguousarray(parts["weight_ih"].T), "Wh": np.ascontiguousarray(parts["weight_hh"].T)}
    if cell == "gru-cudnn":  # b_hn stays inside the reset gate's product; the r and z biases add up
        out["b"] = np.concatenate([bias_ih[: 2 * H] + bias_hh[: 2 * H], bias_ih[2 * H :]])
        out["bhn"] = np.ascontiguousarray(bias_hh[2 * H :])
    else:
        out["b"] = bias_ih + bias_hh
    return out


def from_torch_export(tensors: dict[str, np.ndarray], metadata: dict[str, str], source: str) -> Checkpoint:
    """The inverse of `to_torch` for any task, its configuration read from the metadata."""
    tokenizer, tok_config = tokenizer_from_metadata(metadata)
    m = from_dict(ModelConfig, json.loads(metadata["model_config"]))
    check_model(m)

    def tensor(name: str) -> np.ndarray:
        if name not in tensors:
            raise RnncliError(f"{source}: no {name}, which a {m.task} model exported for PyTorch has")
        return np.asarray(tensors[name], np.float32)

    params = {ours: (np.ascontiguousarray(tensor(theirs).T) if ours.endswith(".W") else tensor(theirs))
              for ours, theirs in _heads(m) if not (ours == "output.W" and m.tie_weights)}
    for q, suffix, module in _layers(m):
        parts = {k: tensor(f"{module}.{k}{suffix}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        params.update({q + k: v for k, v in _layer_from_torch(m.cell, parts, m.hidden).items()})
    return Checkpoint(m, TrainConfig(), tok_config, tokenizer, params,
                      state={"corpus": {"name": f"imported from {source}"}})


def to_rnncli(ck: Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The raw parameters under rnncli's own names, the configuration in the metadata."""
    return dict(ck.params), {"format": "rnncli-params-1", "model_config": json.dumps(to_dict(ck.model)),
                             **tokenizer_metadata(ck.tokenizer, ck.tokenizer_config)}


# ---- import --------------------------------------------------------------------------------------------

_RNN_KEY = re.compile(r"^(?:.*\.)?(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
EMBEDDING_NAMES = ("embedding.weight", "encoder.weight", "embed.weight", "embeddings.weight")
DECODER_NAMES = ("decoder", "fc", "linear", "output", "proj", "head")


def from_torch(tensors: dict[str, np.ndarray], tokenizer, tokenizer_config: TokenizerConfig,
               cell: str | None = None, source: str = "") -> Checkpoint:
    """A checkpoint from an Embedding -> nn.LSTM/GRU/RNN -> Linear state dict (names as above, any
    prefix on the recurrent module's; pytorch/examples' `encoder`/`decoder` names work too)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise RnncliError(f"{source}: {what}")

    if any(k.endswith("_reverse") for k in tensors):
        need(False, "holds a bidirectional layer (…_reverse), which a language model cannot use")
    rnn: dict[int, dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        m = _RNN_KEY.match(name)
        if m:
            rnn.setdefault(int(m.group(2)), {})[m.group(1)] = np.asarray(value, np.float32)
    need(bool(rnn), "no recurrent layer found (expected weight_ih_l0, weight_hh_l0, ... of nn.LSTM/GRU/RNN)")
    layers = len(rnn)
    need(sorted(rnn) == list(range(layers)), f"layers {sorted(rnn)} are not numbered 0..{layers - 1}")
    for layer, parts in rnn.items():
        missing = {"weight_ih", "weight_hh"} - set(parts)
        need(not missing, f"layer {layer} has no {', '.join(sorted(missing))}")
    embedding = next((np.asarray(tensors[k], np.float32) for k in EMBEDDING_NAMES if k in tensors), None)
    need(embedding is not None and embedding.ndim == 2,
         f"no embedding found (expected one of {', '.join(EMBEDDING_NAMES)}, shape (V, D))")
    V, D = embedding.shape
    GH, D0 = rnn[0]["weight_ih"].shape
    H = rnn[0]["weight_hh"].shape[1]
    adaptive = _adaptive_from_torch(tensors, H, V, need)
    decoder = next((p for p in DECODER_NAMES if f"{p}.weight" in tensors), None)
    need(decoder is not None or adaptive is not None,
         f"no output layer found (expected {DECODER_NAMES[0]}.weight and .bias, or an nn.AdaptiveLogSoftmaxWithLoss's "
         "head.weight and tail.*)")
    need(GH % H == 0 and GH // H in (1, 3, 4), f"weight_ih_l0 of shape {(GH, D0)} fits no LSTM, GRU or RNN "
         f"of hidden size {H}")
    G = GH // H
    inferred = {4: "lstm", 3: "gru-cudnn", 1: "rnn"}[G]
    cell = cell or inferred
    need(cell in CELL_NAMES and get_cell(cell).torch_module is not None and inferred == cell.removesuffix("-relu"),
         f"--cell {cell} does not match the weights ({GH} = {G} x {H} gate rows: {inferred})")
    need(D0 == D, f"the embedding is {D} wide but weight_ih_l0 expects {D0}")
    if adaptive is None:
        W_out = np.asarray(tensors[f"{decoder}.weight"], np.float32)
        b_out = np.asarray(tensors.get(f"{decoder}.bias", np.zeros(W_out.shape[0])), np.float32)
        need(W_out.shape == (V, H) and b_out.shape == (V,),
             f"the output layer is {W_out.shape} (+ bias {b_out.shape}), expected ({V}, {H}) for a vocabulary of {V}")
    need(tokenizer.vocab_size == V, f"the vocabulary has {tokenizer.vocab_size} entries but the embedding has {V} rows")
    params = {"embed.weight": embedding}
    for layer in range(layers):
        parts = rnn[layer]
        D_in = D if layer == 0 else H
        for key, shape in (("weight_ih", (GH, D_in)), ("weight_hh", (GH, H)), ("bias_ih", (GH,)), ("bias_hh", (GH,))):
            if key in parts:
                need(parts[key].shape == shape, f"{key}_l{layer} is {parts[key].shape}, expected {shape}")
        params.update({f"layers.{layer}.{k}": v for k, v in _layer_from_torch(cell, parts, H).items()})
    model = ModelConfig(cell=cell, vocab_size=V, embed=D, hidden=H, layers=layers)
    if adaptive is not None:
        head_params, model.cutoffs, model.div_value = adaptive
        model.softmax = "adaptive"
        params.update(head_params)
    else:
        model.tie_weights = bool(np.array_equal(W_out, embedding) and D == H)
        if not model.tie_weights:
            params["output.W"] = np.ascontiguousarray(W_out.T)
        params["output.b"] = b_out
    check_model(model)
    return Checkpoint(model, TrainConfig(), tokenizer_config, tokenizer, params,
                      state={"corpus": {"name": f"imported from {source}"}})


def _adaptive_from_torch(tensors: dict[str, np.ndarray], H: int, V: int, need):
    """An nn.AdaptiveLogSoftmaxWithLoss among the tensors (…head.weight, …tail.{i}.0/1.weight, any
    prefix): (its parameters under rnncli's names, the cutoffs, div_value) read from its shapes, or
    None when there is none."""
    from rnncli.models.adaptive import tail_dims

    first = next((k for k in tensors if k == "tail.0.0.weight" or k.endswith(".tail.0.0.weight")), None)
    if first is None:
        return None
    prefix = first.removesuffix("tail.0.0.weight")
    K = 0
    while f"{prefix}tail.{K}.0.weight" in tensors:
        K += 1
    head = np.asarray(tensors.get(f"{prefix}head.weight", np.zeros((0, 0))), np.float32)
    need(head.ndim == 2 and head.shape[1] == H and head.shape[0] > K,
         f"{prefix}head.weight is {head.shape}, expected (shortlist + {K}, {H})")
    bias = np.asarray(tensors.get(f"{prefix}head.bias", np.zeros(head.shape[0])), np.float32)
    params = {"output.head.W": np.ascontiguousarray(head.T), "output.head.b": bias}
    cutoffs, dims = [head.shape[0] - K], []
    for i in range(K):
        proj = np.asarray(tensors[f"{prefix}tail.{i}.0.weight"], np.float32)
        out = np.asarray(tensors.get(f"{prefix}tail.{i}.1.weight", np.zeros((0, 0))), np.float32)
        need(proj.ndim == 2 and proj.shape[1] == H and out.ndim == 2 and out.shape[1] == proj.shape[0],
             f"{prefix}tail.{i} is {proj.shape} then {out.shape}, expected (d, {H}) then (cluster size, d)")
        params[f"output.tail.{i}.proj.W"], params[f"output.tail.{i}.out.W"] = (np.ascontiguousarray(proj.T),
                                                                           np.ascontiguousarray(out.T))
        dims.append(proj.shape[0])
        cutoffs.append(cutoffs[-1] + out.shape[0])
    need(cutoffs[-1] == V, f"the adaptive softmax covers {cutoffs[-1]:,} words, the embedding {V:,}")
    div_value = H / dims[0]
    need(tail_dims(H, K, div_value) == dims, f"the tails' sizes {dims} follow no div_value for hidden {H}")
    return params, cutoffs[:-1], div_value


def from_rnncli(tensors: dict[str, np.ndarray], metadata: dict[str, str], source: str) -> Checkpoint:
    """The inverse of `to_rnncli`: parameters under rnncli's names, configuration in the metadata."""
    tokenizer, tok_config = tokenizer_from_metadata(metadata)
    model = from_dict(ModelConfig, json.loads(metadata["model_config"]))
    check_model(model)
    return Checkpoint(model, TrainConfig(), tok_config, tokenizer, {k: np.asarray(v) for k, v in tensors.items()},
                      state={"corpus": {"name": f"imported from {source}"}})


def import_model(tensors: dict[str, np.ndarray], metadata: dict[str, str], source: str, vocab: str | None = None,
                 level: str = "word", cell: str | None = None, split: str = "whitespace",
                 blank_lines: str = "eos") -> Checkpoint:
    """A checkpoint from a safetensors file's contents: rnncli's own export, or PyTorch's layout with
    the vocabulary from the file's metadata or from `vocab` (a list of words: cut from text by
    `split`, a blank line `blank_lines`, as the tool that trained the model read its text)."""
    try:
        if metadata.get("format") == "rnncli-params-1":
            return from_rnncli(tensors, metadata, source)
        own_export = metadata.get("format") == "rnncli-torch-1"
        if own_export and json.loads(metadata["model_config"]).get("task", "lm") != "lm":
            return from_torch_export(tensors, metadata, source)
        if vocab is not None:
            tokenizer, tok_config, tensors = vocabulary_for_import(vocab, level, tensors, source, split, blank_lines)
        elif "vocabulary" in metadata:
            tokenizer, tok_config = tokenizer_from_metadata(metadata)
        else:
            raise UsageError(f"{source}: give the model's vocabulary with --vocab (its tokens in id order)")
        if cell is None and "model_config" in metadata:
            cell = json.loads(metadata["model_config"])["cell"]
        return from_torch(tensors, tokenizer, tok_config, cell, source)
    except RnncliError as err:
        if str(err).startswith((source + ":", f"{vocab}:")):
            raise
        if vocab is not None:  # the vocabulary came from that file
            raise RnncliError(f"{vocab}: {err}") from None
        raise RnncliError(f"{source}: damaged rnncli metadata ({err})") from None
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise RnncliError(f"{source}: damaged rnncli metadata ({err!r})") from None


RESERVED_ALIASES = {0: ("<UNK>", "<unk>", "[UNK]", "<oov>"), 1: ("<EOS>", "<eos>", "</s>", "\n")}


def vocabulary_for_import(path: str, level: str, tensors: dict[str, np.ndarray], source: str,
                          split: str = "whitespace", blank_lines: str = "eos"):
    """The tokenizer of `path` (an rnncli tokenizer file, a JSON list of tokens in id order, or one
    token per line) and the tensors with their vocabulary rows in rnncli's order. rnncli keeps
    <UNK> at id 0 and <EOS> at 1: a vocabulary with them elsewhere (pytorch/examples puts `<eos>`
    wherever the corpus first had a line end) has the embedding's and the output layer's rows moved
    to match."""
    from rnncli.formats.checkpoint import load_tokenizer
    from rnncli.text.tokenizers import tokenizer_from_arrays

    if path.endswith(".npz"):
        tokenizer = load_tokenizer(path)
        return tokenizer, tokenizer.config(), tensors
    if level not in ("char", "word"):
        raise UsageError(f"--level must be char or word for a vocabulary list, not {level!r}")
    config = TokenizerConfig(level=level, **({"split": split, "blank_lines": blank_lines} if level == "word" else {}))
    config.check()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise RnncliError(f"{path}: cannot read the vocabulary ({err})") from None
    try:
        tokens = json.loads(text)
    except json.JSONDecodeError:
        tokens = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise RnncliError(f"{path}: a vocabulary is a JSON list of strings or one token per line")
    order = []
    for aliases in RESERVED_ALIASES.values():
        at = next((i for i, t in enumerate(tokens) if t in aliases), None)
        if at is None:
            raise RnncliError(f"{path}: the vocabulary has no {aliases[0]} entry ({' or '.join(aliases[:3])}); "
                              "rnncli needs one for unknown tokens and one for the end of a line")
        order.append(at)
    order += [i for i in range(len(tokens)) if i not in order]
    vocab = ["<UNK>", "<EOS>"] + [tokens[i] for i in order[2:]]
    tokenizer = tokenizer_from_arrays({"level": np.array(level), "vocab": np.array(vocab, dtype=np.str_),
                                       "lowercase": np.array(False), "split": np.array(config.split),
                                       "blank_lines": np.array(config.blank_lines)})
    moved = dict(tensors)
    V = len(tokens)
    for name, value in tensors.items():
        is_vocab_rows = name in EMBEDDING_NAMES or any(name == f"{p}.weight" or name == f"{p}.bias"
                                                       for p in DECODER_NAMES)
        if is_vocab_rows and np.ndim(value) >= 1 and np.shape(value)[0] == V:
            moved[name] = np.asarray(value)[order]
    return tokenizer, config, moved
