"""`rnncli explain`: a page showing what a language model predicts on a text, what its cells track
and how its gradients fade; the numbers are computed in rnncli/inference/explain.py, the page drawn by
rnncli/inference/explain_page.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    OUTPUT_OPTIONS,
    announce_compilation,
    app,
    command_line_text,
    console,
    load_model,
    print_json,
    user_errors,
    utf8_stdout,
)

PANEL = "Page options"


def parse_units(value: str | None) -> list[int] | None:
    from rnncli.errors import UsageError

    if value is None:
        return None
    try:
        units = [int(u) for u in value.replace(" ", "").split(",") if u]
    except ValueError:
        raise UsageError(f"--units takes unit numbers separated by commas (e.g. 12,87), not {value!r}") from None
    if not units:
        raise UsageError("--units: give at least one unit number (e.g. --units 12,87)")
    return units


@app.command()
@user_errors
def explain(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to look at, each read from the start state as "
                                                           "`score` reads a sentence (or use --file).",
                                                      show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="Look at a whole file, its lines read as "
                                                                  "one stream (`-` for stdin).",
                                             show_default=False)] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="HTML page to write (`-` for stdout) "
                                                                      "(default: explain.html).",
                                               show_default=False)] = None,
    layer: Annotated[int | None, typer.Option(help="Layer whose units are shown, 1 = nearest the input "
                                                   "(default: the top layer).", rich_help_panel=PANEL,
                                              show_default=False)] = None,
    units: Annotated[str | None, typer.Option(help="Hidden units to show, e.g. 12,87 (default: the units most "
                                                   "correlated with features of the text).", rich_help_panel=PANEL,
                                              show_default=False)] = None,
    compare: Annotated[list[str] | None, typer.Option(help="Other models to draw on the gradient chart: "
                                                           "M2,M3 or --compare M2 --compare M3.",
                                                      rich_help_panel=PANEL, show_default=False)] = None,
    steps: Annotated[int, typer.Option(help="How many steps back the gradient chart goes.",
                                       rich_help_panel=PANEL)] = 100,
    bits: Annotated[bool, typer.Option(help="Show surprise in bits instead of nats.",
                                       rich_help_panel=OUTPUT_OPTIONS)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page's numbers as JSON (no page unless -o is "
                                                         "given too).", rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Write a page showing what the model predicts on a text (surprise per token, its top-5 guesses),
    what its hidden units track, its gates, and how its gradients fade with distance.

    Example: rnncli explain "The apple and pear salad." "The apple and pair salad." -o salad.html
    """
    import os
    import sys

    from rnncli.errors import UsageError

    texts = command_line_text(texts or [], "the text")
    if file and texts:
        raise UsageError("give texts or --file, not both")
    if not file and not texts:
        raise UsageError('nothing to explain: give a text (rnncli explain "some text") or --file F')
    if texts == ["-"]:
        file = "-"
    unit_list = parse_units(units)
    output = output or (None if as_json else "explain.html")  # --json alone prints, writes no page
    from rnncli.formats.files import check_writable
    from rnncli.training.runfiles import latest_model

    path = model or latest_model() or ""
    other_paths = [other for group in compare or [] for other in group.split(",") if other]
    if output and output != "-":
        check_writable(output, "page", streams=True, inputs=(path, file, *other_paths))
    ck = load_model(path, task="lm")
    if ck.quantization:
        raise UsageError(f"{path} holds int8 weights, made to run, not to learn: its gradients would describe the "
                         "rounding; explain the float model it came from")
    others = [(load_model(other, task="lm"), other) for other in other_paths]
    if file:
        from rnncli.text.data import Corpus

        texts = [Corpus(file).read_text()]
    announce_compilation()
    from rnncli.inference.explain import explain as explain_text

    data = explain_text(ck, path, texts, whole=bool(file), layer=layer, units=unit_list, steps=steps,
                        compare=others)
    if as_json:
        utf8_stdout()
        print_json(data)
    if not output:
        return
    from rnncli.inference.explain_page import render

    page = render(data, "bits" if bits else "nats")
    if output == "-":
        utf8_stdout()
        sys.stdout.write(page)
        return
    from rnncli.formats.files import atomic_write

    atomic_write(output, lambda f: f.write(page.encode("utf-8")), "page", streams=True)
    if os.path.isfile(output):
        console(stderr=True).print(f"wrote {output}: open it in a browser (file://{os.path.abspath(output)})",
                                   highlight=False, soft_wrap=True)
