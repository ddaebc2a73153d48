"""From a training request to a ready run: check the options once, read and encode the data,
build a new run or restore one (the resume policy), estimate memory. Writes nothing.

Also the one loader of model checkpoints: the store (checkpoint.py) checks a file against the
layout the model gives it here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
from rnncli.errors import RnncliError, UsageError
from rnncli.formats.checkpoint import Checkpoint, load_tokenizer, refuse_nonfinite
from rnncli.formats.files import check_writable
from rnncli.models.model import Model
from rnncli.tasks import check_model, get_task, load_model_checkpoint, model_layout  # noqa: F401 - where commands find them
from rnncli.training.optim import Optimizer
from rnncli.training.runfiles import default_out
from rnncli.training.train import DTYPE, Run

TOKENIZER_FIELDS = {f.name for f in fields(TokenizerConfig)}  # the options --vocab fixes

RESUMABLE = {"epochs", "max_steps", "max_time", "lr", "clip", "lr_decay", "patience", "eval_every",
             "weight_decay"}  # training options a resumed run may change
# A language model trained against the clock (--max-time) takes, for each of these options the user
# does not give, the value measured best in five minutes on two cores (bench/README.md, "Quality at
# a fixed budget"): a GRU learns more per second than an LSTM in runs this short, 384 units more than
# 256 with a little dropout (tiny-shakespeare and WikiText-2 as characters), at 1.5x Adam's default
# rate; the default schedule cools it down.
FOR_A_TIME_BUDGET = {"cell": "gru-cudnn", "layers": 2, "hidden": 384, "dropout": 0.1, "batch_size": 32,
                     "seq_len": 100, "lr": 3e-3}
MEMORY_BUDGET = 8 << 30  # bytes; well under this machine's 24 GiB, so a mistake fails fast


def parse_cutoffs(text: str) -> list[int]:
    """--cutoffs 2000,10000 -> [2000, 10000]; "" -> [] (chosen by the vocabulary's size)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",")] if text.strip() else []
    except ValueError:
        raise UsageError(f"--cutoffs must be whole numbers joined by commas, like 2000,10000; not {text!r}") from None


def parse_duration(text: str) -> float:
    """'300', '90s', '5m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise UsageError(f"--max-time must look like 300, 90s, 5m or 1h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def check_loaded(ck: Checkpoint, source: str) -> None:
    """What the checkpoint loader checks, for a model built in memory (an import): every parameter
    present with its shape, finite, and the vocabulary the size of the embedding."""
    shapes, _ = model_layout(ck.model)
    if set(shapes) != set(ck.params):
        extra, missing = sorted(set(ck.params) - set(shapes)), sorted(set(shapes) - set(ck.params))
        raise RnncliError(f"{source}: weights do not fit the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, shape in shapes.items():
        value = ck.params[name]
        if value.shape != shape:
            raise RnncliError(f"{source}: {name} has shape {value.shape}, expected {shape}")
        ck.params[name] = np.ascontiguousarray(value, dtype=np.float32)
    refuse_nonfinite(ck.params, source)
    if ck.tokenizer.vocab_size != ck.model.vocab_size:
        raise RnncliError(f"{source}: the vocabulary has {ck.tokenizer.vocab_size} entries, the model "
                          f"{ck.model.vocab_size}")


def ids_checksum(ids: np.ndarray, block: int = 1 << 22) -> int:
    """CRC-32 of the token ids, read block by block (ids may be memory-mapped)."""
    from rnncli.text.encoding import RELEASE_EVERY, release_pages

    crc = 0
    for start in range(0, len(ids), block):
        crc = zlib.crc32(np.ascontiguousarray(ids[start : start + block], dtype=np.int32).tobytes(), crc)
        if (start + block) % RELEASE_EVERY < block:
            release_pages(ids)
    release_pages(ids)
    return crc


# ---- runs ----------------------------------------------------------------------------------------


def new_run(model: ModelConfig, train: TrainConfig, tokenizer_config: TokenizerConfig, tokenizer,
            params: dict | None = None) -> Run:
    """A fresh run (from `params` when given: --init-from). The configurations are checked already."""
    from rnncli.tasks import build_model

    rng = np.random.default_rng(train.seed)
    if params is None:
        params = build_model(model).init_params(rng, DTYPE)
    optimizer = Optimizer(train.optimizer, params, train.lr, train.weight_decay, train.clip, train.momentum)
    return Run(model, train, tokenizer_config, tokenizer, params, optimizer, rng, lr=train.lr)


def run_from_checkpoint(ck: Checkpoint, train: TrainConfig) -> Run:
    """Continue the run stored in `ck` with (possibly extended) training options `train`."""
    s = ck.state
    if "rng" not in s or not ck.optim:
        raise RnncliError("the checkpoint holds no training state to resume (was it exported for inference?)")
    optimizer = Optimizer(train.optimizer, ck.params, train.lr, train.weight_decay, train.clip, train.momentum)
    if set(optimizer.state) != set(ck.optim):
        raise UsageError(f"cannot resume: the checkpoint's optimizer state is for {ck.train.optimizer}, "
                         f"not {train.optimizer}")
    optimizer.state = ck.optim
    optimizer.step_count = ck.optim_step
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = s["rng"]
        run = Run(ck.model, train, ck.tokenizer_config, ck.tokenizer, ck.params, optimizer, rng, ck.hidden,
                  step=int(s["step"]), epoch=int(s["epoch"]), chunk=int(s["chunk"]),
                  tokens_seen=int(s["tokens_seen"]), lr=float(s["lr"]), best_val=s["best_val"],
                  plateau_best=s["plateau_best"], bad_evals=int(s["bad_evals"]), elapsed=float(s["elapsed"]),
                  train_loss=s["train_loss"], val_loss=s["val_loss"], corpus=dict(s.get("corpus", {})),
                  history=list(s.get("history", [])), val_sample=s.get("val_sample"))
    except (KeyError, TypeError, ValueError) as err:
        raise RnncliError(f"the checkpoint's training state is damaged ({err!r}); start again with "
                          "--init-from to keep the weights") from None
    if train.lr != ck.train.lr:  # the user asked for a new learning rate
        run.lr = train.lr
    optimizer.lr = run.lr
    return run


# ---- from command-line options to a ready run ------------------------------------------------------


@dataclass
class TrainRequest:
    corpus: list[str]  # paths: files, folders, or ["-"]
    model: ModelConfig
    train: TrainConfig
    tokenizer: TokenizerConfig
    explicit: set  # names of the options the user actually gave
    out: str | None = None
    valid: str | None = None
    resume: str | None = None
    init_from: str | None = None
    vocab: str | None = None  # a frozen vocabulary: a tokenizer file or a checkpoint
    store: str | None = None  # a token store of the corpus: used when it holds it, else made
    on_note: Callable[[str], None] = lambda note: None  # what the user should know (a store made again)
    encoding: str = "utf-8"
    errors: str = "strict"
    glob: str = "*"

    def __post_init__(self):
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]


def prepare(req: TrainRequest) -> tuple[Run, object, object, str]:
    """Check everything, read and encode the data, build or restore the run. Writes nothing.
    Returns the run, the training and validation data (token ids for a language model, encoded
    examples for a task) and the checkpoint path."""
    from rnncli.text.data import Corpus

    if req.resume and req.init_from:
        raise UsageError("--resume and --init-from cannot be combined: resume continues a run, "
                         "init-from starts a new one from its weights")
    if req.vocab and (req.resume or req.init_from):
        raise UsageError(f"--vocab with --{'resume' if req.resume else 'init-from'}: that checkpoint's vocabulary "
                         "is the one used; drop --vocab")
    given = sorted(TOKENIZER_FIELDS & req.explicit)
    if req.vocab and given:
        raise UsageError(f"--vocab {req.vocab} fixes the tokenizer; drop --{given[0].replace('_', '-')}")
    if req.train.max_time > 0 and get_task(req.model.task).stream and not (req.resume or req.init_from):
        for name, value in FOR_A_TIME_BUDGET.items():
            if name not in req.explicit and not (name == "lr" and req.train.optimizer not in ("adam", "adamw")):
                setattr(req.model if hasattr(req.model, name) else req.train, name, value)
    req.train.check()
    out = req.out or (req.resume if req.resume else default_out(req.corpus[0], req.model.cell))
    corpus = Corpus(req.corpus, req.encoding, req.errors, req.glob)
    corpus.check_codec()
    if req.out or req.resume:
        check_writable(out, "checkpoint", folder_may_be_made=True,  # before any work, not at the first save
                       inputs=(*corpus.files, req.init_from, req.valid))
    base = load_model_checkpoint(req.resume or req.init_from) if (req.resume or req.init_from) else None
    if base is not None and base.quantization and req.resume:
        raise UsageError(f"{req.resume} holds int8 weights and no training state: it can be sampled and scored, not "
                         "resumed (resume the float model it came from, or start from it with --init-from)")
    if base is not None:
        _refuse_changes(req, base)
        tokenizer, tok_config, model = base.tokenizer, base.tokenizer_config, base.model
        model.step_int8 = ""  # an int8 model's float32 values (formats/int8.py) train as any float model
        if req.init_from and "dropout" in req.explicit:
            model.dropout = req.model.dropout
            check_model(model)
    else:
        model, tok_config, tokenizer = req.model, req.tokenizer, None
        if req.vocab:
            tokenizer = load_tokenizer(req.vocab)
            tok_config = tokenizer.config()
            model.vocab_size = tokenizer.vocab_size
        elif "level" not in req.explicit:
            tok_config.level = get_task(model.task).default_level
        tok_config.check()
        if "embed" not in req.explicit:
            model.embed = model.hidden if model.tie_weights else (64 if tok_config.level == "char" else 256)
        model.vocab_size = max(model.vocab_size, 3, *(c + 1 for c in model.cutoffs))  # until the vocabulary is known
        if get_task(model.task).labelled:
            model.labels = ["?1", "?2"]  # checked with the real labels once they are read
        check_model(model)  # before fitting a tokenizer, which may take long; the vocabulary comes next
    stream = get_task(model.task).stream
    if req.store and not stream:
        raise UsageError(f"--store keeps a language model's token stream; a {model.task} model reads labelled "
                         "examples: drop --store")
    read = _read_corpus if stream else _read_examples
    train_data, val_data, corpus_info, tokenizer = read(req, corpus, model, tok_config, tokenizer)
    if stream:
        check_memory(model, req.train, train_data)
    if req.resume:
        old = base.state.get("corpus", {})
        if old.get("train_checksum") not in (None, corpus_info["train_checksum"]):
            raise UsageError(f"cannot resume: {corpus.name} is not the training data of {req.resume} "
                             f"(it was {old.get('name')}, {old.get('tokens', 0):,} tokens)")
        try:
            run = run_from_checkpoint(base, req.train)
        except UsageError as err:
            raise UsageError(f"{req.resume}: {err}") from None
        except RnncliError as err:
            raise RnncliError(f"{req.resume}: {err}", err.exit_code) from None
    else:
        run = new_run(model, req.train, tok_config, tokenizer, base.params if base is not None else None)
    run.corpus = corpus_info
    if base is not None and not (req.out or req.resume):
        out = default_out(req.corpus[0], model.cell)  # --init-from: the checkpoint's cell names the run
    return run, train_data, val_data, out


def _read_corpus(req: TrainRequest, corpus, model: ModelConfig, tok_config: TokenizerConfig, tokenizer):
    """A language model's data: the corpus as token ids, the validation ids apart."""
    from rnncli.text.data import Corpus, split_validation
    from rnncli.text.encoding import encode_corpus
    from rnncli.text.store import corpus_ids

    if model.softmax == "adaptive" and tok_config.level == "char":
        raise UsageError("--softmax adaptive is for word and subword vocabularies: a character model's few "
                         "symbols have no rare tail to cluster (drop --softmax)")
    tokenizer, ids = corpus_ids(corpus, tokenizer, tok_config, req.store, req.on_note)
    model.vocab_size = tokenizer.vocab_size
    if model.softmax == "adaptive":
        from rnncli.models.adaptive import default_cutoffs

        model.cutoffs = model.cutoffs or default_cutoffs(model.vocab_size)
        check_model(model)
    if req.valid:
        train_ids, val_ids = ids, encode_corpus(tokenizer, Corpus(req.valid, req.encoding, req.errors))
        if len(val_ids) < 2:
            raise RnncliError(f"{req.valid}: too short to validate on (needs at least 2 tokens)")
    else:
        train_ids, val_ids = split_validation(ids, req.train.val_fraction)
        if val_ids is not None and len(val_ids) < 2:
            val_ids = None
    B, T = req.train.batch_size, req.train.seq_len
    if len(train_ids) // B - 1 < T:
        raise UsageError(f"{corpus.name}: {len(train_ids):,} training tokens are too few for one batch of "
                         f"--batch-size {B} x --seq-len {T} (needs {B * (T + 1):,}); "
                         "lower --batch-size or --seq-len")
    info = {"name": corpus.name, "bytes": corpus.size_bytes(), "tokens": len(ids),
            "train_checksum": ids_checksum(train_ids)}
    return train_ids, val_ids, info, tokenizer


def _read_examples(req: TrainRequest, corpus, model: ModelConfig, tok_config: TokenizerConfig, tokenizer):
    """A task's data: its examples read, the tokenizer and the labels fitted on the training ones,
    everything encoded."""
    from rnncli.text.data import Corpus
    from rnncli.text.examples import checksum, encode_examples, label_set, read_examples, split_examples
    from rnncli.text.tokenizers import fit_tokenizer

    task = get_task(model.task)
    examples = read_examples(task, corpus)
    if req.valid:
        train_ex, val_ex = examples, read_examples(task, Corpus(req.valid, req.encoding, req.errors))
    else:
        train_ex, val_ex = split_examples(examples, req.train.val_fraction, req.train.seed)
    if tokenizer is None:
        tokenizer = fit_tokenizer(tok_config, ["\n".join(train_ex.texts()) + "\n"])
        model.vocab_size = tokenizer.vocab_size
        if task.labelled:
            model.labels = label_set(train_ex)
            if len(model.labels) < 2:
                raise UsageError(f"{corpus.name}: every example has the label {model.labels[0]!r}; "
                                 "a model needs at least two to learn anything")
    train_data = encode_examples(train_ex, tokenizer, model.labels)
    val_data = None if val_ex is None else encode_examples(val_ex, tokenizer, model.labels)
    if val_data is not None and val_data.inputs and not any((np.asarray(t) >= 0).any() for t in val_data.targets):
        where = req.valid or "the validation split"
        raise UsageError(f"{where}: none of its {len(val_data.inputs):,} examples has a label the training examples "
                         f"have ({', '.join(model.labels[:8])}{', ...' if len(model.labels) > 8 else ''}): "
                         "validation would score nothing; give a validation set with the training labels")
    info = {"name": corpus.name, "bytes": corpus.size_bytes(), "tokens": train_data.tokens(),
            "examples": len(train_ex), "train_checksum": checksum(train_data)}
    return train_data, val_data, info, tokenizer


def estimate_memory(model: ModelConfig, train: TrainConfig, ids: np.ndarray | None = None) -> int:
    """Bytes a training step needs, roughly: parameters with gradients and optimizer state (x4),
    activations (B*T*H per gate and layer, see docs), and the output layer's logits: B*T*V for the
    dense layer; an adaptive softmax's head B*T*(c_1 + K) and each tail's at the rows whose target is
    in it (B*T times its share of the training tokens `ids`, the first million read; all of them
    when not given)."""
    m = Model(model)
    n_params = sum(int(np.prod(s)) for s in m.param_shapes().values())
    BT = train.batch_size * train.seq_len
    activations = BT * model.layers * model.hidden * (m.cell.gates + 4) + BT * model.embed
    logits = BT * model.vocab_size
    if model.softmax == "adaptive":
        head = m.head
        seen = np.bincount(head.clusters(np.asarray(ids[:1_000_000])), minlength=head.K + 1) \
            if ids is not None and len(ids) else np.ones(head.K + 1)
        shares = seen / seen.sum()
        logits = BT * (head.shortlist + head.K) + sum(
            int(np.ceil(BT * shares[i + 1])) * (head.bounds[i + 1] - head.bounds[i]) for i in range(head.K))
    return 4 * (4 * n_params + activations + 2 * logits)


def check_memory(model: ModelConfig, train: TrainConfig, ids: np.ndarray | None = None) -> None:
    need, large = estimate_memory(model, train, ids), model.softmax == "full" and model.vocab_size > 10000
    if need > MEMORY_BUDGET:
        raise UsageError(f"this model would need about {need / 2**30:.1f} GiB per training step (vocabulary "
                         f"{model.vocab_size:,}, hidden {model.hidden}, batch {train.batch_size} x {train.seq_len}); "
                         "lower --max-vocab, --hidden, --batch-size or --seq-len"
                         + (", or use --softmax adaptive" if large else ""))


def _refuse_changes(req: TrainRequest, base: Checkpoint) -> None:
    """A resumed or fine-tuned run keeps the checkpoint's model and vocabulary: options that would
    change them are refused with the reason, not silently ignored."""
    what = "--resume" if req.resume else "--init-from"
    model_opts = {"cell", "hidden", "layers", "embed", "tie_weights", "task", "bidirectional", "softmax", "cutoffs",
                  "div_value"}
    model_opts |= set() if req.init_from else {"dropout"}
    tok_opts = {"level", "min_count", "max_vocab", "vocab_size", "lowercase", "spm_type", "split", "blank_lines"}
    for name in sorted(req.explicit):
        if name in model_opts and getattr(req.model, name) != getattr(base.model, name):
            raise UsageError(f"{what}: --{name.replace('_', '-')} {getattr(req.model, name)} differs from the "
                             f"checkpoint's {getattr(base.model, name)}; the model's shape is fixed")
        if name in tok_opts and getattr(req.tokenizer, name) != getattr(base.tokenizer_config, name):
            raise UsageError(f"{what}: --{name.replace('_', '-')} differs from the checkpoint's tokenizer; "
                             "the vocabulary is fixed")
    if req.resume:
        for name in sorted(req.explicit):
            if hasattr(base.train, name) and name not in RESUMABLE and \
                    getattr(req.train, name) != getattr(base.train, name):
                raise UsageError(f"--resume: --{name.replace('_', '-')} {getattr(req.train, name)} differs from the "
                                 f"run's {getattr(base.train, name)}; it cannot change mid-run "
                                 "(start a new run with --init-from instead)")
        merged = TrainConfig(**base.train.__dict__)
        for name in req.explicit & RESUMABLE:
            setattr(merged, name, getattr(req.train, name))
        merged.check()
        req.train = merged
