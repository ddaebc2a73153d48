"""`rnncli classify`, `tag`, `translate` and `evaluate`: the task models' commands; the work is in
rnncli/inference/predict.py, each answer's record in its task (rnncli/tasks/)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rnncli.cli.common import (
    GENERATION_OPTIONS,
    OUTPUT_OPTIONS,
    app,
    command_line_text,
    load_model,
    print_json,
    user_errors,
    utf8_stdout,
)

MODEL_HELP = "Checkpoint (default: $RNNCLI_MODEL, else the last trained)."
FILE_HELP = "Read one text per line from this file (`-` for stdin)."

ModelOption = Annotated[str | None, typer.Option(help=MODEL_HELP, show_default=False)]
FileOption = Annotated[str | None, typer.Option("--file", "-f", help=FILE_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line of input.",
                                          rich_help_panel=OUTPUT_OPTIONS)]
TextsArgument = Annotated[list[str] | None, typer.Argument(help="Texts (`-` or --file: one per line).",
                                                           show_default=False)]


def _inputs(texts: list[str] | None, file: str | None) -> list[str]:
    """The texts given as arguments or, one per non-blank line, in --file."""
    from rnncli.errors import UsageError

    if texts == ["-"] and not file:
        texts, file = None, "-"  # `rnncli classify -`: the texts come on stdin
    if texts and file:
        raise UsageError("give texts or --file, not both")
    if file:
        from rnncli.text.data import Corpus

        lines = [line for line in Corpus(file).lines() if line.strip()]
        if not lines:
            raise UsageError(f"{Corpus(file).name}: no lines to read")
        return lines
    if not texts:
        raise UsageError("give a text to read, or --file FILE (`-` for stdin)")
    return command_line_text(list(texts), "the text")


@app.command()
@user_errors
def classify(texts: TextsArgument = None, model: ModelOption = None, file: FileOption = None,
             as_json: JsonOption = False) -> None:
    """Label texts with a classifier (train one with --task classify). Prints, per text: the label,
    every label's probability (most likely first) and the text, separated by tabs.

    Example: rnncli classify "There is nothing to like in this movie."
    """
    from rnncli.tasks import get_task

    inputs = _inputs(texts, file)
    ck = load_model(model, task="classify")
    utf8_stdout()
    for answer in get_task("classify").answers(ck, inputs, None):
        if as_json:
            print_json(answer)
        else:
            ranked = " ".join(f"{label}={p:.3f}" for label, p in answer["probabilities"].items())
            sys.stdout.write(f"{answer['label']}\t{ranked}\t{answer['text']}\n")


@app.command()
@user_errors
def tag(texts: TextsArgument = None, model: ModelOption = None, file: FileOption = None,
        output_format: Annotated[str, typer.Option("--format", help="text (token/TAG), conll (token<TAB>tag "
                                                                    "lines, a blank line between sentences) or json.",
                                                   rich_help_panel=OUTPUT_OPTIONS)] = "text",
        as_json: JsonOption = False) -> None:
    """Tag every token of each sentence with a tagger (train one with --task tag). The text is split
    into words and punctuation marks first.

    Example: rnncli tag "Yesterday, Harry Potter met Hermione Granger."
    """
    from rnncli.errors import UsageError
    from rnncli.tasks import get_task

    output_format = "json" if as_json else output_format
    if output_format not in ("text", "conll", "json"):
        raise UsageError(f"--format must be text, conll or json, not {output_format!r}")
    inputs = _inputs(texts, file)
    ck = load_model(model, task="tag")
    utf8_stdout()
    for answer in get_task("tag").answers(ck, inputs, None):
        tokens, tags = answer["tokens"], answer["tags"]
        if output_format == "json":
            print_json(answer)
        elif output_format == "conll":
            sys.stdout.write("".join(f"{w}\t{t}\n" for w, t in zip(tokens, tags, strict=True)) + "\n")
        else:
            sys.stdout.write(" ".join(f"{w}/{t}" for w, t in zip(tokens, tags, strict=True)) + "\n")


@app.command()
@user_errors
def translate(
    texts: TextsArgument = None,
    model: ModelOption = None,
    file: FileOption = None,
    temperature: Annotated[float, typer.Option(help="0 = greedy (the most likely token each step); above 0, "
                                                    "sample.", rich_help_panel=GENERATION_OPTIONS)] = 0.0,
    top_k: Annotated[int, typer.Option(help="Sample from the k most likely tokens; 0 = all.",
                                       rich_help_panel=GENERATION_OPTIONS)] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling: smallest set with this probability.",
                                         rich_help_panel=GENERATION_OPTIONS)] = 1.0,
    beam: Annotated[int, typer.Option(help="Beam search with this width.", rich_help_panel=GENERATION_OPTIONS)] = 0,
    max_length: Annotated[int, typer.Option(help="At most this many target tokens.",
                                            rich_help_panel=GENERATION_OPTIONS)] = 200,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.", rich_help_panel=GENERATION_OPTIONS,
                                             show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Translate each text with an encoder–decoder (train one with --task translate).

    Example: rnncli translate "the 3rd of March 2021"
    """
    from rnncli.config import SampleConfig
    from rnncli.tasks import get_task

    config = SampleConfig(length=max_length, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                          seed=seed)
    config.check()
    inputs = _inputs(texts, file)
    ck = load_model(model, task="translate")
    utf8_stdout()
    for answer in get_task("translate").answers(ck, inputs, config):  # each line as soon as it is made
        if as_json:
            print_json(answer)
        else:
            sys.stdout.write(answer["translation"] + "\n")
            sys.stdout.flush()


@app.command()
@user_errors
def evaluate(
    file: Annotated[str, typer.Argument(help="Labelled data in the training format of the model's task "
                                             "(`-` for stdin).", show_default=False)],
    model: ModelOption = None,
    beam: Annotated[int, typer.Option(help="Translation: beam width (0 = greedy).",
                                      rich_help_panel=GENERATION_OPTIONS)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Every figure as one JSON object.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """How good a model is on labelled data: accuracy, per-class precision/recall/F1 and the
    confusion matrix (classify); token accuracy and conlleval's phrase F1 (tag); corpus BLEU as
    sacrebleu computes it and exact matches (translate); loss and perplexity (lm).

    Example: rnncli evaluate --model runs/ner.npz corpora/ner-test.txt
    """
    from rnncli.config import SampleConfig
    from rnncli.tasks import get_task
    from rnncli.text.data import Corpus

    config = SampleConfig(length=200, temperature=0.0, beam=beam)
    config.check()
    corpus = Corpus(file)
    corpus.check_codec()
    ck = load_model(model)
    task = get_task(ck.model.task)
    report = task.evaluate(ck, corpus, config)
    utf8_stdout()
    if as_json:
        print_json(report)
        return
    sys.stdout.write(task.report_text(report))
