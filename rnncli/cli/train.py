"""`rnncli train`: options to a TrainRequest, the run itself in rnncli/training/train.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    DATA_OPTIONS,
    FILE_OPTIONS,
    GLOB_HELP,
    INPUTS_HELP,
    MODEL_OPTIONS,
    OUTPUT_OPTIONS,
    QUIET_HELP,
    STOP_OPTIONS,
    STORE_HELP,
    TOKENIZER_OPTIONS,
    TRAINING_OPTIONS,
    VERBOSE_HELP,
    BlankLines,
    Split,
    announce_compilation,
    app,
    note,
    user_errors,
)
from rnncli.kernels.cells import CELL_NAMES


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    corpus: Annotated[list[str], typer.Argument(help=f"Training text: {INPUTS_HELP}.", show_default=False)],
    level: Annotated[str, typer.Option(help="char, word or subword (default: char for lm, word for the other tasks).",
                                       rich_help_panel=TOKENIZER_OPTIONS, show_default=False)] = "char",
    min_count: Annotated[int, typer.Option(help="Rarer tokens become <UNK>.", rich_help_panel=TOKENIZER_OPTIONS)] = 1,
    max_vocab: Annotated[int, typer.Option(help="Word level: vocabulary limit, 0 = all.",
                                           rich_help_panel=TOKENIZER_OPTIONS)] = 0,
    vocab_size: Annotated[int, typer.Option(help="Subword level: sentencepiece vocabulary size.",
                                            rich_help_panel=TOKENIZER_OPTIONS)] = 2000,
    lowercase: Annotated[bool, typer.Option(help="Word level: fold case.", rich_help_panel=TOKENIZER_OPTIONS)] = False,
    spm_type: Annotated[str, typer.Option(help="Subword level: unigram or bpe.",
                                          rich_help_panel=TOKENIZER_OPTIONS)] = "unigram",
    split: Split = "words",
    blank_lines: BlankLines = "skip",
    task: Annotated[str, typer.Option(help="lm (a language model), classify (label<TAB>text lines), tag (CoNLL "
                                           "columns) or translate (source<TAB>target lines).",
                                      rich_help_panel=MODEL_OPTIONS)] = "lm",
    bidirectional: Annotated[bool, typer.Option(help="Each layer reads forward and backward (not for lm).",
                                                rich_help_panel=MODEL_OPTIONS)] = False,
    cell: Annotated[str, typer.Option(help=f"{', '.join(CELL_NAMES[:-1])} or {CELL_NAMES[-1]}.",
                                      rich_help_panel=MODEL_OPTIONS)] = "lstm",
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.", rich_help_panel=MODEL_OPTIONS)] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden size of every layer.", rich_help_panel=MODEL_OPTIONS)] = 256,
    embed: Annotated[int, typer.Option(help="Embedding size (default: 64 for char, 256 otherwise).",
                                       rich_help_panel=MODEL_OPTIONS, show_default=False)] = 64,
    dropout: Annotated[float, typer.Option(help="Dropout on each layer's output.",
                                           rich_help_panel=MODEL_OPTIONS)] = 0.0,
    tie_weights: Annotated[bool, typer.Option(help="Share embedding and output weights (embed = hidden).",
                                              rich_help_panel=MODEL_OPTIONS)] = False,
    softmax: Annotated[str, typer.Option(help="The output layer: full, or adaptive (word and subword levels: "
                                              "frequent words in a head, rare ones in clusters; exact).",
                                         rich_help_panel=MODEL_OPTIONS)] = "full",
    cutoffs: Annotated[str, typer.Option(help="Adaptive: where the head's shortlist and each cluster end, e.g. "
                                              "2000,10000 (default: those of 2000,10000,50000 below the "
                                              "vocabulary size).", rich_help_panel=MODEL_OPTIONS,
                                         show_default=False)] = "",
    div_value: Annotated[float, typer.Option(help="Adaptive: cluster i projects to hidden / div-value^i dimensions.",
                                             rich_help_panel=MODEL_OPTIONS)] = 4.0,
    seq_len: Annotated[int, typer.Option(help="Tokens per truncated-BPTT chunk.",
                                         rich_help_panel=TRAINING_OPTIONS)] = 100,
    batch_size: Annotated[int, typer.Option(help="Parallel streams per step.", rich_help_panel=TRAINING_OPTIONS)] = 32,
    optimizer: Annotated[str, typer.Option(help="adam, adamw, sgd or rmsprop.",
                                           rich_help_panel=TRAINING_OPTIONS)] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.", rich_help_panel=TRAINING_OPTIONS)] = 2e-3,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.", rich_help_panel=TRAINING_OPTIONS)] = 0.0,
    clip: Annotated[float, typer.Option(help="Global gradient-norm clipping, 0 = off.",
                                        rich_help_panel=TRAINING_OPTIONS)] = 5.0,
    lr_decay: Annotated[float, typer.Option(help="Multiply lr by this when validation stops improving.",
                                            rich_help_panel=TRAINING_OPTIONS)] = 1.0,
    schedule: Annotated[str, typer.Option(help="Learning-rate decay over the budget: constant, cooldown (held, "
                                               "then linear over the last quarter), cosine or linear.",
                                          rich_help_panel=TRAINING_OPTIONS)] = "cooldown",
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.",
                                        rich_help_panel=TRAINING_OPTIONS)] = 0,
    momentum: Annotated[float, typer.Option(help="SGD momentum.", rich_help_panel=TRAINING_OPTIONS)] = 0.9,
    unk_dropout: Annotated[float, typer.Option(
        help="Task models: a word seen once in training becomes <UNK> with this probability, so that "
             "unseen words are handled (0 = off).", rich_help_panel=TRAINING_OPTIONS)] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=TRAINING_OPTIONS)] = 1234,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.", rich_help_panel=STOP_OPTIONS)] = 5,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps in total, 0 = no limit.",
                                           rich_help_panel=STOP_OPTIONS)] = 0,
    max_time: Annotated[str, typer.Option(help="Stop after this long: 300, 90s, 5m, 1h; 0 = no limit. A language "
                                               "model's options not given then take the values measured best in "
                                               "five minutes (shown when training starts).",
                                          rich_help_panel=STOP_OPTIONS)] = "0",
    patience: Annotated[int, typer.Option(help="Stop after N evaluations without improvement, 0 = never.",
                                          rich_help_panel=STOP_OPTIONS)] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validate on this last fraction of the corpus.",
                                                rich_help_panel=DATA_OPTIONS)] = 0.1,
    valid: Annotated[str | None, typer.Option(help="Validate on this file instead.",
                                              rich_help_panel=DATA_OPTIONS)] = None,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations, 0 = ~4 per epoch.",
                                            rich_help_panel=DATA_OPTIONS)] = 0,
    glob: Annotated[str, typer.Option(help=GLOB_HELP, rich_help_panel=DATA_OPTIONS)] = "*",
    store: Annotated[str | None, typer.Option(help=STORE_HELP, rich_help_panel=DATA_OPTIONS,
                                              show_default=False)] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the corpus.", rich_help_panel=DATA_OPTIONS)] = "utf-8",
    errors: Annotated[str, typer.Option(help="On undecodable bytes: strict, replace, ignore.",
                                        rich_help_panel=DATA_OPTIONS)] = "strict",
    out: Annotated[str | None, typer.Option(help="Checkpoint path (default: runs/<corpus>-<cell>.npz).",
                                            rich_help_panel=FILE_OPTIONS, show_default=False)] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the run saved in this checkpoint.",
                                               rich_help_panel=FILE_OPTIONS)] = None,
    init_from: Annotated[str | None, typer.Option(help="Start from this checkpoint's weights and vocabulary.",
                                                  rich_help_panel=FILE_OPTIONS)] = None,
    vocab: Annotated[str | None, typer.Option(help="Train with exactly this vocabulary: a `tokenize --save` file or "
                                                   "a checkpoint (its tokenizer; the weights start afresh).",
                                              rich_help_panel=TOKENIZER_OPTIONS, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, rich_help_panel=OUTPUT_OPTIONS)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP,
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines: one per evaluation, then a summary.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Train a recurrent model: a language model on a text corpus, or (--task) a classifier, a
    tagger or a translator on labelled examples.

    Example: rnncli train corpora/demo.txt --cell gru --hidden 128 --epochs 5

    Example: rnncli train corpora/sentiment.tsv --task classify --bidirectional
    """
    from typer._click.core import ParameterSource

    from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
    from rnncli.training.request import TrainRequest, parse_cutoffs, parse_duration, prepare
    from rnncli.training.runfiles import set_latest
    from rnncli.training.train import StopFlag
    from rnncli.training.train import train as run_training

    explicit = {name for name in ctx.params
                if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    request = TrainRequest(
        corpus=corpus,
        model=ModelConfig(cell=cell, embed=embed, hidden=hidden, layers=layers, dropout=dropout,
                          tie_weights=tie_weights, task=task, bidirectional=bidirectional, softmax=softmax,
                          cutoffs=parse_cutoffs(cutoffs), div_value=div_value),
        train=TrainConfig(seq_len=seq_len, batch_size=batch_size, optimizer=optimizer, lr=lr,
                          weight_decay=weight_decay, clip=clip, lr_decay=lr_decay, schedule=schedule, warmup=warmup,
                          momentum=momentum, unk_dropout=unk_dropout, epochs=epochs,
                          max_steps=max_steps, max_time=parse_duration(max_time), val_fraction=val_fraction,
                          eval_every=eval_every, patience=patience, seed=seed),
        tokenizer=TokenizerConfig(level=level, min_count=min_count, max_vocab=max_vocab, vocab_size=vocab_size,
                                  lowercase=lowercase, spm_type=spm_type, split=split, blank_lines=blank_lines),
        explicit=explicit, out=out, valid=valid, resume=resume, init_from=init_from,
        encoding=encoding, errors=errors, glob=glob, vocab=vocab, store=store, on_note=note,
    )
    run, train_ids, val_ids, out_path = prepare(request)
    announce_compilation()
    stop = StopFlag()
    from rnncli.cli.display import TrainDisplay

    with TrainDisplay(run, as_json=as_json, quiet=quiet, verbose=verbose) as display:
        summary = run_training(run, train_ids, val_ids, out_path, display.on_event, stop)
    set_latest(out_path)  # `sample` and `score` without --model use the model trained last here
    display.finish(summary, corpus)
    if summary["stop_reason"] == "interrupted":
        raise typer.Exit(130)
