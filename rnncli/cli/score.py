"""`rnncli score`: sentences ranked or a file summarised; the work is in rnncli/inference/score.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    OUTPUT_OPTIONS,
    QUIET_HELP,
    SCORING_OPTIONS,
    STORE_HELP,
    announce_compilation,
    app,
    command_line_text,
    load_model,
    model_path,
    note,
    print_json,
    user_errors,
    utf8_stdout,
)
from rnncli.cli.jobs import Output, RayAddress, Resume, ShardLines, Workers, run_sharded
from rnncli.jobs.shards import SHARD_LINES


@app.command()
@user_errors
def score(
    texts: Annotated[list[str] | None, typer.Argument(help="Sentences to score (or use --file).",
                                                      show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    file: Annotated[list[str] | None, typer.Option("--file", "-f", help="Score every line of a file (`-` for stdin; "
                                                                     "a folder: its files; repeat for more).",
                                                   rich_help_panel=SCORING_OPTIONS)] = None,
    per_token: Annotated[bool, typer.Option(help="Show each token's probability.",
                                            rich_help_panel=SCORING_OPTIONS)] = False,
    no_eos: Annotated[bool, typer.Option(help="Leave P(<EOS> | sentence) out.",
                                         rich_help_panel=SCORING_OPTIONS)] = False,
    continuous: Annotated[bool, typer.Option(help="With --file: score the text as one stream, as training "
                                                  "validates (state carried across lines).",
                                             rich_help_panel=SCORING_OPTIONS)] = False,
    streams: Annotated[int | None, typer.Option(help="With --continuous: contiguous streams scored side by side, "
                                                     "each from a fresh state (default: the model's training batch "
                                                     "size; pytorch/examples' word_language_model tests on 10).",
                                                rich_help_panel=SCORING_OPTIONS, show_default=False)] = None,
    store: Annotated[str | None, typer.Option(help="With --continuous: " + STORE_HELP, rich_help_panel=SCORING_OPTIONS,
                                              show_default=False)] = None,
    log10: Annotated[bool, typer.Option(help="Report log10 probabilities.", rich_help_panel=OUTPUT_OPTIONS)] = False,
    bits: Annotated[bool, typer.Option(help="Report log2 probabilities.", rich_help_panel=OUTPUT_OPTIONS)] = False,
    output_format: Annotated[str, typer.Option("--format", help="text, tsv, json or jsonl.",
                                               rich_help_panel=OUTPUT_OPTIONS)] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    per_line: Annotated[bool, typer.Option(help="With --file: a line per input line, `id<TAB>logprob<TAB>tokens"
                                                "<TAB>perplexity` (id = line number; --format jsonl for JSON).",
                                           rich_help_panel=OUTPUT_OPTIONS)] = False,
    keep_below: Annotated[float | None, typer.Option(help="With --file: print the lines themselves whose "
                                                          "perplexity is below this (a filter).",
                                                     rich_help_panel=OUTPUT_OPTIONS, show_default=False)] = None,
    keep_above: Annotated[float | None, typer.Option(help="With --file: print the lines whose perplexity is "
                                                          "above this.", rich_help_panel=OUTPUT_OPTIONS,
                                                     show_default=False)] = None,
    workers: Workers = 1,
    ray: RayAddress = None,
    output: Output = None,
    resume: Resume = False,
    shard_lines: ShardLines = SHARD_LINES,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Score sentences: log P(sentence), perplexity, ranked best first; or a whole file, summarised,
    line by line, or filtered by perplexity, on several processes or a Ray cluster.

    Example: rnncli score "the apple and pear salad" "the apple and pair salad"
    """
    import sys

    from rnncli.cli.score_output import continuous_text, print_file_score, print_sentence_scores
    from rnncli.errors import UsageError

    fmt = "json" if as_json else output_format
    if fmt not in ("text", "tsv", "json", "jsonl"):
        raise UsageError(f"--format must be text, tsv, json or jsonl, not {fmt!r}")
    if log10 and bits:
        raise UsageError("choose one of --log10 and --bits")
    unit = "log10" if log10 else "bits" if bits else "ln"
    texts = command_line_text(texts or [], "the sentence text")
    if file and texts:
        raise UsageError("give sentences or --file, not both")
    if not file and not texts:
        raise UsageError('nothing to score: give sentences (rnncli score "some text") or --file F')
    if continuous and not file:
        raise UsageError("--continuous applies to --file")
    if streams is not None and not continuous:
        raise UsageError("--streams applies to --continuous")
    if store and not continuous:
        raise UsageError("--store applies to --continuous (a job reads its lines as they come)")
    if streams is not None and streams < 1:
        raise UsageError(f"--streams must be at least 1, not {streams}")
    if texts == ["-"]:
        file = ["-"]
    filtering = keep_below is not None or keep_above is not None
    line_output = per_line or filtering
    job_options = workers != 1 or ray or output or resume or shard_lines != SHARD_LINES
    if (line_output or job_options) and (not file or continuous):
        raise UsageError("--per-line, --keep-below/--keep-above and the job options (--workers, --ray, -o, --resume) "
                         "apply to --file (without --continuous)")
    if per_line and filtering:
        raise UsageError("give --per-line or --keep-below/--keep-above, not both")
    if output and not line_output:
        raise UsageError("-o writes the lines of --per-line or --keep-below/--keep-above; a summary is printed")
    for flag, bound in (("--keep-below", keep_below), ("--keep-above", keep_above)):
        if bound is not None and bound != bound:  # NaN: no perplexity is below or above it
            raise UsageError(f"{flag} must be a perplexity (a number), not nan")
    if filtering and (keep_below is not None and keep_above is not None and keep_above >= keep_below):
        raise UsageError("--keep-above must be below --keep-below (lines between the two are kept)")
    path = model_path(model)
    ck = load_model(path, task="lm")
    announce_compilation()
    utf8_stdout()
    if file:
        from rnncli.text.data import Corpus

        corpus = Corpus(file)
        if not continuous:
            from rnncli.inference.score import ScoreLines, file_score
            from rnncli.jobs.shards import LineSource, preload

            preload(path, "model", ck)
            mode = "keep" if filtering else ("jsonl" if fmt in ("json", "jsonl") else "tsv") if per_line else "summary"
            task = ScoreLines(eos=not no_eos, output=mode, unit=unit, keep_below=keep_below, keep_above=keep_above)
            outcome = run_sharded(task, LineSource(corpus, shard_lines), path, output, workers, ray, resume,
                                  corpus.name, quiet=quiet)
            if filtering and not quiet:
                kept, lines = int(outcome.counts.get("kept", 0)), int(outcome.counts.get("sentences", 0))
                sys.stderr.write(f"kept {kept:,} of {lines:,} lines\n")
            if not line_output:
                print_file_score(file_score(corpus.name, outcome.counts), fmt, unit)
            return
        if continuous:
            from rnncli.inference.score import continuous_report

            record = continuous_report(ck, corpus, streams, store, note)
            if fmt in ("json", "jsonl"):
                print_json(record)
            else:
                print(continuous_text(record))
            return
    from rnncli.inference.score import score_sentences

    scores = score_sentences(ck, texts, eos=not no_eos)
    print_sentence_scores(ck, scores, fmt, unit, per_token)
