"""`rnncli plot`: learning curves to a PNG, one or several runs (matplotlib is an optional extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import app, console, user_errors


def read_history(path: str) -> tuple[str, list[dict]]:
    """(label, records) from a metrics .jsonl file or a checkpoint."""
    import os

    from rnncli.errors import UsageError
    from rnncli.training.runfiles import parse_metrics, read_metrics

    if path == "-":
        import sys

        return "stdin", parse_metrics(sys.stdin.read().splitlines(), "stdin")
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    label = os.path.splitext(os.path.basename(path))[0].removesuffix(".metrics")
    if path.endswith(".npz"):
        from rnncli.tasks import load_model_checkpoint

        ck = load_model_checkpoint(path, training_state=False)
        return f"{label} ({ck.model.cell})", ck.state.get("history", [])
    return label, read_metrics(path)


@app.command()
@user_errors
def plot(
    runs: Annotated[list[str], typer.Argument(help="Metrics files (.metrics.jsonl, `-` for stdin) or checkpoints.",
                                              show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="PNG file to write.")] = "curve.png",
    x_axis: Annotated[str, typer.Option("--x", help="tokens or steps.")] = "tokens",
) -> None:
    """Plot learning curves (train and validation loss) of one or more runs to a PNG.

    Example: rnncli plot runs/demo-gru.metrics.jsonl runs/demo-lstm.metrics.jsonl -o curves.png
    """
    from rnncli.errors import RnncliError, UsageError

    if x_axis not in ("tokens", "steps"):
        raise UsageError("--x must be tokens or steps")
    from rnncli.formats.files import check_writable

    check_writable(output, "plot", streams=True, inputs=tuple(runs))
    histories = [read_history(path) for path in runs]
    if not any(h for _, h in histories):
        raise RnncliError("no evaluations recorded in these runs yet")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'rnncli[plot]' (or pip install matplotlib)") from None
    key = "tokens_seen" if x_axis == "tokens" else "step"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, (label, history) in enumerate(histories):
        color = f"C{i}"
        xs = [r[key] for r in history]
        train = [r.get("train_loss") for r in history]
        val = [r.get("val_loss") for r in history]
        ax.plot(xs, train, color=color, alpha=0.5, linestyle="--", label=f"{label} train")
        if any(v is not None for v in val):
            ax.plot(xs, val, color=color, marker="o", markersize=3, label=f"{label} validation")
    ax.set_xlabel("tokens seen" if x_axis == "tokens" else "steps")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from rnncli.formats.files import atomic_write

    try:  # a PNG may go to a stream (-o /dev/stdout, a FIFO) as well as to a file
        atomic_write(output, lambda f: fig.savefig(f, format="png"), "plot", streams=True)
    finally:
        plt.close(fig)
    console(stderr=True).print(f"wrote {output}", highlight=False)
