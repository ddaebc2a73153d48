"""The command-line app: parse options, call one core function, print. No maths here.

Heavy modules (numpy, numba, sentencepiece) are imported inside the commands, so `rnncli --help`
and `rnncli --version` start instantly and compile nothing.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from typing import Annotated

import typer

from rnncli.errors import RnncliError

app = typer.Typer(
    name="rnncli",
    help="Train, sample and score recurrent language models (RNN, GRU, LSTM) on a CPU.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

TOKENIZER_OPTIONS = "Tokenizer"
OUTPUT_OPTIONS = "Output"


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def user_errors(fn):
    """Turn our own errors into one line on stderr and the right exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RnncliError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except MemoryError:
            _fail("out of memory; try a smaller corpus, vocabulary or model", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        from rnncli import __version__

        typer.echo(f"rnncli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, sample and score recurrent language models (RNN, GRU, LSTM) on a CPU."""


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _console():
    from rich.console import Console

    return Console()


# ---------------------------------------------------------------------------------------------
# tokenize


@app.command()
@user_errors
def tokenize(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="A corpus file (`-` for stdin); with --vocab/--model, texts to tokenize.",
                       show_default=False),
    ] = None,
    level: Annotated[str, typer.Option(help="char, word or subword.", rich_help_panel=TOKENIZER_OPTIONS)] = "char",
    min_count: Annotated[int, typer.Option(help="Rarer tokens become <UNK> (char, word).",
                                           rich_help_panel=TOKENIZER_OPTIONS)] = 1,
    max_vocab: Annotated[int, typer.Option(help="Word level: at most this many entries, 0 = all.",
                                           rich_help_panel=TOKENIZER_OPTIONS)] = 0,
    vocab_size: Annotated[int, typer.Option(help="Subword level: sentencepiece vocabulary size.",
                                            rich_help_panel=TOKENIZER_OPTIONS)] = 2000,
    lowercase: Annotated[bool, typer.Option(help="Word level: fold case (at encode time too).",
                                            rich_help_panel=TOKENIZER_OPTIONS)] = False,
    spm_type: Annotated[str, typer.Option(help="Subword level: unigram or bpe.",
                                          rich_help_panel=TOKENIZER_OPTIONS)] = "unigram",
    encoding: Annotated[str, typer.Option(help="Text encoding of the corpus.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="On undecodable bytes: strict, replace or ignore.")] = "strict",
    show: Annotated[int, typer.Option(help="Show the N most frequent tokens.", rich_help_panel=OUTPUT_OPTIONS)] = 10,
    save: Annotated[str | None, typer.Option(help="Write the fitted tokenizer to this .npz file.",
                                             rich_help_panel=OUTPUT_OPTIONS)] = None,
    vocab: Annotated[str | None, typer.Option(help="Tokenize texts with a saved tokenizer (.npz).")] = None,
    model: Annotated[str | None, typer.Option(help="Tokenize texts with a model checkpoint's tokenizer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Fit a character, word or subword vocabulary on a corpus and report it.

    Example: rnncli tokenize corpora/demo.txt --level word --show 20
    """
    from rnncli.errors import UsageError

    inputs = inputs or []
    if vocab or model:
        from rnncli.checkpoint import load_tokenizer

        if not inputs:
            raise UsageError("give the text to tokenize, e.g. rnncli tokenize --vocab vocab.npz \"some text\"")
        tok = load_tokenizer(vocab or model)
        _show_pieces(tok, inputs, as_json)
        return
    if len(inputs) != 1:
        raise UsageError("give exactly one corpus file (or - for stdin)")
    if show < 0:
        raise UsageError("--show must be 0 or more")

    from rnncli.config import TokenizerConfig
    from rnncli.data import Corpus, count_lines, encode_corpus, token_stats
    from rnncli.tokenizers import fit_tokenizer

    corpus = Corpus(inputs[0], encoding, errors)
    config = TokenizerConfig(level=level, min_count=min_count, max_vocab=max_vocab, vocab_size=vocab_size,
                             lowercase=lowercase, spm_type=spm_type)
    tok = fit_tokenizer(config, corpus.blocks())
    ids = encode_corpus(tok, corpus)
    stats = token_stats(ids, tok.vocab_size, count_lines(corpus))
    if save:
        from rnncli.checkpoint import save_tokenizer

        save_tokenizer(save, tok)
    top = [{"id": i, "token": tok.vocab[i], "count": n} for i, n in stats.most_frequent(show)]
    if as_json:
        extra = {"characters": tok.vocab_size - 1} if tok.level == "char" else {}  # newline is <EOS>
        _print_json({"corpus": corpus.name, "level": tok.level, "vocab_size": tok.vocab_size, **extra,
                     "tokens": stats.tokens, "unk": stats.unk, "unk_rate": stats.unk_rate,
                     "lines": stats.lines, "top": top, "saved": save})
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{corpus.name}[/]: level {tok.level}, vocabulary {tok.vocab_size} "
                  f"(incl. <UNK>, <EOS>), {stats.tokens:,} tokens, {stats.lines:,} lines, "
                  f"<UNK> rate {stats.unk_rate:.2%}", highlight=False)
    if top:
        table = Table("id", "token", "count", "share")
        for row in top:
            table.add_row(str(row["id"]), repr(row["token"])[1:-1] if tok.level == "char" else row["token"],
                          f"{row['count']:,}", f"{row['count'] / max(stats.tokens, 1):.2%}")
        console.print(table)
    if save:
        console.print(f"saved tokenizer to {save}", highlight=False)


def _show_pieces(tok, texts: list[str], as_json: bool) -> None:
    from rnncli.tokenizers import UNK

    rows = [{"text": t, "tokens": [{"piece": p, "id": i, "token": tok.vocab[i]} for p, i in tok.pieces(t)]}
            for t in texts]
    if as_json:
        _print_json(rows)
        return
    console = _console()
    for row in rows:
        parts = []
        for t in row["tokens"]:
            piece = t["piece"].replace("\n", "\\n")
            parts.append(f"[red]{piece} = <UNK>[/]" if t["id"] == UNK else f"{piece} = {t['id']}")
        console.print(",  ".join(parts), highlight=False)


# ---------------------------------------------------------------------------------------------
# train

MODEL_OPTIONS = "Model"
TRAINING_OPTIONS = "Training"
STOP_OPTIONS = "When to stop"
DATA_OPTIONS = "Data"
FILE_OPTIONS = "Checkpoints"


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    corpus: Annotated[str, typer.Argument(help="Training text (`-` for stdin).", show_default=False)],
    level: Annotated[str, typer.Option(help="char, word or subword.", rich_help_panel=TOKENIZER_OPTIONS)] = "char",
    min_count: Annotated[int, typer.Option(help="Rarer tokens become <UNK>.", rich_help_panel=TOKENIZER_OPTIONS)] = 1,
    max_vocab: Annotated[int, typer.Option(help="Word level: vocabulary limit, 0 = all.",
                                           rich_help_panel=TOKENIZER_OPTIONS)] = 0,
    vocab_size: Annotated[int, typer.Option(help="Subword level: sentencepiece vocabulary size.",
                                            rich_help_panel=TOKENIZER_OPTIONS)] = 2000,
    lowercase: Annotated[bool, typer.Option(help="Word level: fold case.", rich_help_panel=TOKENIZER_OPTIONS)] = False,
    spm_type: Annotated[str, typer.Option(help="Subword level: unigram or bpe.",
                                          rich_help_panel=TOKENIZER_OPTIONS)] = "unigram",
    cell: Annotated[str, typer.Option(help="rnn, rnn-relu, gru, gru-simple, lstm or lstm-peephole.",
                                      rich_help_panel=MODEL_OPTIONS)] = "lstm",
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.", rich_help_panel=MODEL_OPTIONS)] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden size of every layer.", rich_help_panel=MODEL_OPTIONS)] = 256,
    embed: Annotated[int, typer.Option(help="Embedding size (default: 64 for char, 256 otherwise).",
                                       rich_help_panel=MODEL_OPTIONS, show_default=False)] = 64,
    dropout: Annotated[float, typer.Option(help="Dropout on each layer's output.",
                                           rich_help_panel=MODEL_OPTIONS)] = 0.0,
    tie_weights: Annotated[bool, typer.Option(help="Share embedding and output weights (embed = hidden).",
                                              rich_help_panel=MODEL_OPTIONS)] = False,
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
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=TRAINING_OPTIONS)] = 1234,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.", rich_help_panel=STOP_OPTIONS)] = 10,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps in total, 0 = no limit.",
                                           rich_help_panel=STOP_OPTIONS)] = 0,
    max_time: Annotated[str, typer.Option(help="Stop after this long: 300, 90s, 5m, 1h; 0 = no limit.",
                                          rich_help_panel=STOP_OPTIONS)] = "0",
    patience: Annotated[int, typer.Option(help="Stop after N evaluations without improvement, 0 = never.",
                                          rich_help_panel=STOP_OPTIONS)] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validate on this last fraction of the corpus.",
                                                rich_help_panel=DATA_OPTIONS)] = 0.1,
    valid: Annotated[str | None, typer.Option(help="Validate on this file instead.",
                                              rich_help_panel=DATA_OPTIONS)] = None,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations, 0 = ~4 per epoch.",
                                            rich_help_panel=DATA_OPTIONS)] = 0,
    encoding: Annotated[str, typer.Option(help="Text encoding of the corpus.", rich_help_panel=DATA_OPTIONS)] = "utf-8",
    errors: Annotated[str, typer.Option(help="On undecodable bytes: strict, replace, ignore.",
                                        rich_help_panel=DATA_OPTIONS)] = "strict",
    out: Annotated[str | None, typer.Option(help="Checkpoint path (default: runs/<corpus>-<cell>.npz).",
                                            rich_help_panel=FILE_OPTIONS, show_default=False)] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the run saved in this checkpoint.",
                                               rich_help_panel=FILE_OPTIONS)] = None,
    init_from: Annotated[str | None, typer.Option(help="Start from this checkpoint's weights and vocabulary.",
                                                  rich_help_panel=FILE_OPTIONS)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines: one per evaluation, then a summary.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Train a recurrent language model on a text corpus.

    Example: rnncli train corpora/demo.txt --cell gru --hidden 128 --epochs 5
    """
    from typer._click.core import ParameterSource

    from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
    from rnncli.train import StopFlag, TrainRequest, parse_duration, prepare
    from rnncli.train import train as run_training

    explicit = {name for name in ctx.params
                if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    request = TrainRequest(
        corpus=corpus,
        model=ModelConfig(cell=cell, embed=embed, hidden=hidden, layers=layers, dropout=dropout,
                          tie_weights=tie_weights),
        train=TrainConfig(seq_len=seq_len, batch_size=batch_size, optimizer=optimizer, lr=lr,
                          weight_decay=weight_decay, clip=clip, lr_decay=lr_decay, epochs=epochs,
                          max_steps=max_steps, max_time=parse_duration(max_time), val_fraction=val_fraction,
                          eval_every=eval_every, patience=patience, seed=seed),
        tokenizer=TokenizerConfig(level=level, min_count=min_count, max_vocab=max_vocab, vocab_size=vocab_size,
                                  lowercase=lowercase, spm_type=spm_type),
        explicit=explicit, out=out, valid=valid, resume=resume, init_from=init_from,
        encoding=encoding, errors=errors,
    )
    run, train_ids, val_ids, out_path = prepare(request)
    stop = StopFlag()
    from rnncli.cli_display import TrainDisplay

    with TrainDisplay(run, as_json=as_json) as display:
        summary = run_training(run, train_ids, val_ids, out_path, display.on_event, stop)
    display.finish(summary, corpus)
    if summary["stop_reason"] == "interrupted":
        raise typer.Exit(130)


# ---------------------------------------------------------------------------------------------
# sample and score

GENERATION_OPTIONS = "Generation"
SCORING_OPTIONS = "Scoring"


def _load_model(path: str | None):
    from rnncli.checkpoint import load_checkpoint
    from rnncli.errors import UsageError
    from rnncli.train import latest_model

    path = path or latest_model()
    if not path:
        raise UsageError("no model given and none trained here yet: run `rnncli train CORPUS` first, "
                         "or pass --model PATH (or set RNNCLI_MODEL)")
    return load_checkpoint(path)


@app.command()
@user_errors
def sample(
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate, not counting the prime.",
                                        rich_help_panel=GENERATION_OPTIONS)] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.",
                                               rich_help_panel=GENERATION_OPTIONS)] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample from the k most likely tokens; 0 = all.",
                                       rich_help_panel=GENERATION_OPTIONS)] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling: smallest set with this probability.",
                                         rich_help_panel=GENERATION_OPTIONS)] = 1.0,
    beam: Annotated[int, typer.Option(help="Beam search with this width (most likely continuation).",
                                      rich_help_panel=GENERATION_OPTIONS)] = 0,
    prime: Annotated[str, typer.Option(help="Text the model reads first; the output continues it.",
                                       rich_help_panel=GENERATION_OPTIONS)] = "",
    prime_file: Annotated[str | None, typer.Option(help="Read the prime from a file (`-` for stdin).",
                                                   rich_help_panel=GENERATION_OPTIONS)] = None,
    until_eos: Annotated[bool, typer.Option(help="Stop at the end of the first line/sentence.",
                                            rich_help_panel=GENERATION_OPTIONS)] = False,
    stop: Annotated[str | None, typer.Option(help="Stop once the output contains this text.",
                                             rich_help_panel=GENERATION_OPTIONS)] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Separate samples to draw.",
                                             rich_help_panel=GENERATION_OPTIONS)] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed: same seed, model and options, same output.",
                                             rich_help_panel=GENERATION_OPTIONS, show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sample.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Generate text from a trained model, streamed as it is produced.

    Example: rnncli sample --temperature 0.8 --prime "The " --length 200 --seed 1
    """
    from rnncli.sample import SampleConfig, check_sample_config, encode_prime, generate_samples, stdout_writer

    config = SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                          until_eos=until_eos, stop=stop, num_samples=num_samples, seed=seed)
    check_sample_config(config)
    if prime_file:
        from rnncli.data import Corpus

        prime = Corpus(prime_file).read_text()
    ck = _load_model(model)
    _, unknown = encode_prime(ck.tokenizer, prime)
    if unknown:
        sys.stderr.write(f"warning: the prime has {unknown} token(s) outside the vocabulary; read as <UNK>\n")
    _utf8_stdout()
    for i, s in enumerate(generate_samples(ck, prime, config, None if as_json else stdout_writer)):
        if as_json:
            _print_json({"text": s.text, "continuation": s.continuation, "tokens": len(s.tokens),
                         "token_ids": s.tokens, "logprob": s.logprob})
        else:
            if not s.text.endswith("\n"):
                sys.stdout.write("\n")
            if i < num_samples - 1:
                sys.stdout.write("\n")  # a blank line between samples
            sys.stdout.flush()


def _utf8_stdout() -> None:
    """Write UTF-8 even when stdout is redirected to a file or pipe with another locale."""
    try:
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass


@app.command()
@user_errors
def score(
    texts: Annotated[list[str] | None, typer.Argument(help="Sentences to score (or use --file).",
                                                      show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="Score every line of a file (`-` for stdin).",
                                             rich_help_panel=SCORING_OPTIONS)] = None,
    per_token: Annotated[bool, typer.Option(help="Show each token's probability.",
                                            rich_help_panel=SCORING_OPTIONS)] = False,
    no_eos: Annotated[bool, typer.Option(help="Leave P(<EOS> | sentence) out.",
                                         rich_help_panel=SCORING_OPTIONS)] = False,
    continuous: Annotated[bool, typer.Option(help="With --file: score the text as one stream, as training "
                                                  "validates (state carried across lines).",
                                             rich_help_panel=SCORING_OPTIONS)] = False,
    log10: Annotated[bool, typer.Option(help="Report log10 probabilities.", rich_help_panel=OUTPUT_OPTIONS)] = False,
    bits: Annotated[bool, typer.Option(help="Report log2 probabilities.", rich_help_panel=OUTPUT_OPTIONS)] = False,
    output_format: Annotated[str, typer.Option("--format", help="text, tsv, json or jsonl.",
                                               rich_help_panel=OUTPUT_OPTIONS)] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Score sentences: log P(sentence), perplexity, ranked best first; or a whole file.

    Example: rnncli score "the apple and pear salad" "the apple and pair salad"
    """
    from rnncli.cli_score import print_file_score, print_sentence_scores
    from rnncli.errors import UsageError

    fmt = "json" if as_json else output_format
    if fmt not in ("text", "tsv", "json", "jsonl"):
        raise UsageError(f"--format must be text, tsv, json or jsonl, not {fmt!r}")
    if log10 and bits:
        raise UsageError("choose one of --log10 and --bits")
    unit = "log10" if log10 else "bits" if bits else "ln"
    texts = texts or []
    if file and texts:
        raise UsageError("give sentences or --file, not both")
    if not file and not texts:
        raise UsageError('nothing to score: give sentences (rnncli score "some text") or --file F')
    if continuous and not file:
        raise UsageError("--continuous applies to --file")
    if texts == ["-"]:
        file = "-"
    ck = _load_model(model)
    _utf8_stdout()
    if file:
        from rnncli.data import Corpus, encode_corpus

        corpus = Corpus(file)
        if continuous:
            from rnncli.score import continuous_loss

            ids = encode_corpus(ck.tokenizer, corpus)
            loss = continuous_loss(ck, ids, ck.train.batch_size, ck.train.seq_len)
            _print_json({"file": corpus.name, "tokens": int(len(ids)), "loss": loss, "perplexity": math.exp(loss)}) \
                if fmt in ("json", "jsonl") else print(f"{corpus.name}: {len(ids):,} tokens, {loss:.4f} nats/token, "
                                                       f"perplexity {math.exp(loss):.3f}")
            return
        from rnncli.score import score_lines

        result = score_lines(ck, corpus.lines(), corpus.name, eos=not no_eos)
        print_file_score(result, fmt, unit)
        return
    from rnncli.score import score_sentences

    scores = score_sentences(ck, texts, eos=not no_eos)
    print_sentence_scores(ck, scores, fmt, unit, per_token)


def main() -> None:
    app()
