"""`rnncli tokenize`: fit a vocabulary and report it, or show how a text is tokenized."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    GLOB_HELP,
    INPUTS_HELP,
    OUTPUT_OPTIONS,
    TOKENIZER_OPTIONS,
    BlankLines,
    Split,
    app,
    command_line_text,
    console,
    load_model,
    note,
    print_json,
    user_errors,
)
from rnncli.cli.jobs import Output, RayAddress, Resume, ShardLines, Workers, run_sharded
from rnncli.jobs.shards import SHARD_LINES


@app.command()
@user_errors
def tokenize(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help=f"The corpus: {INPUTS_HELP}. With --vocab/--model: texts to tokenize.",
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
    split: Split = "words",
    blank_lines: BlankLines = "skip",
    glob: Annotated[str, typer.Option(help=GLOB_HELP)] = "*",
    encoding: Annotated[str, typer.Option(help="Text encoding of the corpus.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="On undecodable bytes: strict, replace or ignore.")] = "strict",
    show: Annotated[int, typer.Option(help="Show the N most frequent tokens.", rich_help_panel=OUTPUT_OPTIONS)] = 10,
    save: Annotated[str | None, typer.Option(help="Write the fitted tokenizer to this .npz file.",
                                             rich_help_panel=OUTPUT_OPTIONS)] = None,
    vocab: Annotated[str | None, typer.Option(help="Tokenize texts with a saved tokenizer (.npz).")] = None,
    model: Annotated[str | None, typer.Option(help="Tokenize texts with a model checkpoint's tokenizer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (with --encode: JSON lines).",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    encode: Annotated[list[str] | None, typer.Option(help="With --vocab/--model: encode this input (a file, a "
                                                          "folder, `-` for stdin; repeat for more), one line of token "
                                                          "ids per input line.", show_default=False)] = None,
    store: Annotated[str | None, typer.Option(help="Encode the corpus (or --encode's input) into this token store, "
                                                   "which train --store and score --store read.",
                                              rich_help_panel=OUTPUT_OPTIONS, show_default=False)] = None,
    workers: Workers = 1,
    ray: RayAddress = None,
    output: Output = None,
    resume: Resume = False,
    shard_lines: ShardLines = SHARD_LINES,
) -> None:
    """Fit a character, word or subword vocabulary on a corpus and report it.

    Example: rnncli tokenize corpora/demo.txt --level word --show 20
    """
    from rnncli.errors import UsageError

    inputs = inputs or []
    job_options = workers != 1 or ray or output or resume or shard_lines != SHARD_LINES
    if job_options and not encode:
        raise UsageError("--workers, --ray, -o, --resume and --shard-lines apply to --encode")
    if store and job_options:
        raise UsageError("--store writes the token store itself: drop --workers, --ray, -o, --resume, --shard-lines")
    if encode:
        if not (vocab or model) or inputs:
            raise UsageError("--encode FILE takes the tokenizer of --vocab V or --model M, and no other input")
        from rnncli.jobs.shards import LineSource
        from rnncli.text.data import Corpus, EncodeLines

        corpus = Corpus(encode, encoding, errors, glob)
        corpus.check_codec()
        if store:
            from rnncli.formats.checkpoint import load_tokenizer

            tok = load_tokenizer(vocab) if vocab else load_model(model).tokenizer
            _store(store, corpus, tok, tok.config(), as_json)
            return
        source = vocab or model
        run_sharded(EncodeLines(as_json), LineSource(corpus, shard_lines), source, output, workers, ray, resume,
                    corpus.name)
        return
    if vocab or model:
        from rnncli.formats.checkpoint import load_tokenizer

        if not inputs:
            raise UsageError("give the text to tokenize, e.g. rnncli tokenize --vocab vocab.npz \"some text\"")
        tok = load_tokenizer(vocab) if vocab else load_model(model).tokenizer
        _show_pieces(tok, command_line_text(inputs, "the text to tokenize"), as_json)
        return
    if not inputs:
        raise UsageError("give the corpus: one or more files or folders (or - for stdin)")
    if show < 0:
        raise UsageError("--show must be 0 or more")

    from rnncli.config import TokenizerConfig
    from rnncli.text.data import Corpus, count_lines, token_stats
    from rnncli.text.store import corpus_ids

    corpus = Corpus(inputs, encoding, errors, glob)
    config = TokenizerConfig(level=level, min_count=min_count, max_vocab=max_vocab, vocab_size=vocab_size,
                             lowercase=lowercase, spm_type=spm_type, split=split, blank_lines=blank_lines)
    config.check()
    if save:
        from rnncli.formats.files import check_writable

        check_writable(save, "tokenizer", inputs=tuple(corpus.files))  # before the work, not after it
    tok, ids = corpus_ids(corpus, None, config, store, note)
    stats = token_stats(ids, tok.vocab_size, count_lines(corpus))
    if save:
        from rnncli.formats.checkpoint import save_tokenizer

        save_tokenizer(save, tok)
    top = [{"id": i, "token": tok.vocab[i], "count": n} for i, n in stats.most_frequent(show)]
    if as_json:
        extra = {"characters": tok.vocab_size - 1} if tok.level == "char" else {}  # newline is <EOS>
        print_json({"corpus": corpus.name, "level": tok.level, "vocab_size": tok.vocab_size, **extra,
                     "tokens": stats.tokens, "unk": stats.unk, "unk_rate": stats.unk_rate,
                     "lines": stats.lines, "top": top, "saved": save})
        return
    from rich.table import Table

    out = console()
    out.print(f"[bold]{corpus.name}[/]: level {tok.level}, vocabulary {tok.vocab_size} "
                  f"(incl. <UNK>, <EOS>), {stats.tokens:,} tokens, {stats.lines:,} lines, "
                  f"<UNK> rate {stats.unk_rate:.2%}", highlight=False)
    if top:
        table = Table("id", "token", "count", "share")
        for row in top:
            table.add_row(str(row["id"]), repr(row["token"])[1:-1] if tok.level == "char" else row["token"],
                          f"{row['count']:,}", f"{row['count'] / max(stats.tokens, 1):.2%}")
        out.print(table)
    if save:
        out.print(f"saved tokenizer to {save}", highlight=False)


def _show_pieces(tok, texts: list[str], as_json: bool) -> None:
    from rnncli.text.tokenizers import UNK

    rows = [{"text": t, "tokens": [{"piece": p, "id": i, "token": tok.vocab[i]} for p, i in tok.pieces(t)]}
            for t in texts]
    if as_json:
        print_json(rows)
        return
    out = console()
    for row in rows:
        parts = []
        for t in row["tokens"]:
            piece = t["piece"].replace("\n", "\\n")
            parts.append(f"[red]{piece} = <UNK>[/]" if t["id"] == UNK else f"{piece} = {t['id']}")
        out.print(",  ".join(parts), highlight=False)


def _store(path: str, corpus, tok, config, as_json: bool) -> None:
    from rnncli.text.store import stored_corpus

    kept = stored_corpus(path, corpus, tok, config, note)
    record = {"corpus": corpus.name, "store": path, "tokens": int(len(kept.ids)), "dtype": kept.ids.dtype.name,
              "files": len(corpus.files)}
    if as_json:
        print_json(record)
    else:
        print(f"{path}: {record['tokens']:,} tokens of {corpus.name} ({record['dtype']})")
