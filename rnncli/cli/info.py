"""`rnncli info`: what a checkpoint holds, and its learning curve drawn in the terminal."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from rnncli.cli.common import OUTPUT_OPTIONS, app, console, load_model, print_json, user_errors


def text_curve(history: list[dict], width: int = 64, height: int = 14) -> list[str]:
    """Train (·) and validation (o) loss against tokens seen, as lines of text."""
    points = [(r["tokens_seen"], r.get(k), mark) for r in history for k, mark in (("train_loss", "·"),
                                                                                    ("val_loss", "o"))]
    points = [(x, y, m) for x, y, m in points if y is not None and math.isfinite(y)]
    if len(points) < 2:
        return []
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y1 = y0 + 1e-9
    grid = [[" "] * width for _ in range(height)]
    for x, y, mark in points:
        col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
        row = round((y1 - y) / (y1 - y0) * (height - 1))
        if grid[row][col] != "o":
            grid[row][col] = mark
    lines = []
    for i, row in enumerate(grid):
        label = f"{y1 - (y1 - y0) * i / (height - 1):7.3f} |" if i in (0, height // 2, height - 1) else "        |"
        lines.append(label + "".join(row))
    lines.append("        +" + "-" * width)
    lines.append(f"         {x0:,.0f} tokens".ljust(width - 12) + f"{x1:,.0f} tokens")
    lines.append("         · train loss   o validation loss (nats/token)")
    return lines


@app.command()
@user_errors
def info(
    checkpoint: Annotated[str | None, typer.Argument(help="Checkpoint (default: $RNNCLI_MODEL, else the last "
                                                          "trained).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Show what is inside a checkpoint and draw its learning curve.

    Example: rnncli info runs/demo-gru.npz
    """
    from rnncli.formats.checkpoint import describe
    from rnncli.training.runfiles import latest_model

    path = checkpoint or latest_model() or ""
    d = describe(load_model(path or None, allow_nonfinite=True), path)
    if as_json:
        print_json(d)
        return
    out = console()

    def loss(v):
        return "-" if v is None else f"{v:.4f}"

    size = f"{d['corpus_bytes']:,} bytes, {d['corpus_tokens']:,} tokens" if d["corpus_bytes"] is not None else "?"
    task = {"lm": "language model", "classify": "classifier", "tag": "tagger",
            "translate": "translator (encoder-decoder)"}[d["task"]]
    labels = f" ({len(d['labels'])} labels: {', '.join(d['labels'][:12])}{', ...' if len(d['labels']) > 12 else ''})"
    rows = [
        ("task", task + (labels if d["labels"] else "")),
        ("model", f"{d['cell']}, {d['layers']} {'bidirectional ' if d['bidirectional'] else ''}layer(s) of "
                  f"{d['hidden']}, embedding {d['embed']}"
                  f"{', tied weights' if d['tie_weights'] else ''}, dropout {d['dropout']}"
                  + (f", adaptive softmax (cutoffs {', '.join(map(str, d['softmax']['cutoffs']))}, div value "
                     f"{d['softmax']['div_value']:g})" if d["softmax"]["kind"] == "adaptive" else "")),
        ("parameters", f"{d['parameters']:,} ({d['dtype']})" if not d["quantization"] else
         f"{d['parameters']:,} (weights in int8, {d['quantization']['scheme']} scales; generation in "
         f"{'int8' if d['step_int8'] else 'float32'} activations, scoring in float32)"),
        ("tokenizer", f"{d['level']}, vocabulary {d['vocab_size']:,}"),
        ("corpus", f"{d['corpus']} ({size})"),
        ("training", f"{d['steps']:,} steps, {d['tokens_seen']:,} tokens, {d['seconds']:.0f} s, {d['optimizer']} "
                     f"lr {d['lr']:g}, batch {d['batch_size']}" + (f" x {d['seq_len']}" if d["task"] == "lm" else "")),
        ("loss", f"train {loss(d['train_loss'])}, validation {loss(d['val_loss'])} (best {loss(d['best_val_loss'])}) "
                 f"nats/{'token' if d['task'] in ('lm', 'translate') else 'label'}"),
        ("version", f"rnncli {d['rnncli_version']}, checkpoint format {d['format_version']}"),
    ]
    if d["nonfinite_weights"]:
        rows.append(("unusable", "NaN or infinite values in " + ", ".join(d["nonfinite_weights"])
                     + ": sample and score refuse this model"))
    out.print(f"[bold]{path}[/]", highlight=False)
    for key, value in rows:
        out.print(f"  {key:<11} {value}", highlight=False)
    curve = text_curve(d["history"])
    if curve:
        out.print()
        for line in curve:
            out.print(line, highlight=False)
