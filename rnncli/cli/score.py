"""`rnncli score`: sentences ranked or a file summarised; the work is in rnncli/score.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    OUTPUT_OPTIONS,
    SCORING_OPTIONS,
    announce_compilation,
    app,
    command_line_text,
    load_model,
    print_json,
    user_errors,
    utf8_stdout,
)


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
    if texts == ["-"]:
        file = "-"
    ck = load_model(model, task="lm")
    announce_compilation()
    utf8_stdout()
    if file:
        from rnncli.data import Corpus

        corpus = Corpus(file)
        if continuous:
            from rnncli.score import continuous_report

            record = continuous_report(ck, corpus)
            if fmt in ("json", "jsonl"):
                print_json(record)
            else:
                print(continuous_text(record))
            return
        from rnncli.score import score_lines

        result = score_lines(ck, corpus.lines(), corpus.name, eos=not no_eos)
        print_file_score(result, fmt, unit)
        return
    from rnncli.score import score_sentences

    scores = score_sentences(ck, texts, eos=not no_eos)
    print_sentence_scores(ck, scores, fmt, unit, per_token)
