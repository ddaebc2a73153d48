"""How the command line shows a training run: a live rich bar on a terminal, the same lines as plain
text in a pipe or a log, JSON lines with --json.
Part of the CLI layer (rnncli/cli/, the only package that imports rich); train.py only emits events.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from rnncli.tasks import get_task


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

class TrainDisplay:
    def __init__(self, run, as_json: bool = False, quiet: bool = False, verbose: bool = False):
        self.run = run
        self.as_json = as_json
        self.quiet = quiet
        self.verbose = verbose and not quiet
        no_color = "NO_COLOR" in os.environ or None
        self.console = Console(soft_wrap=True, no_color=no_color)
        self.err = Console(stderr=True, soft_wrap=True, no_color=no_color)
        self.live = not as_json and self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self):
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console, transient=True,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=1, status="starting")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def _line(self, e: dict) -> str:
        return (f"epoch {e['epoch_fraction']:.2f}  train {_fmt_loss(e['train_loss'])}  val {_fmt_loss(e['val_loss'])}  "
                f"{e['tokens_per_s']:,.0f} tok/s  {_fmt_time(e['seconds'])} elapsed  eta {_fmt_time(e['eta'])}")

    def on_event(self, e: dict) -> None:
        kind = e["event"]
        if kind == "start":
            r = self.run
            n_params = sum(p.size for p in r.params.values())
            header = (f"{r.model.cell} {r.model.layers}x{r.model.hidden} ({n_params:,} parameters), "
                      f"{r.tokenizer.level} vocabulary {r.model.vocab_size}, {e['train_tokens']:,} training and "
                      f"{e['val_tokens']:,} validation tokens, {e['steps_per_epoch']} steps per epoch\n"
                      f"batch {r.train.batch_size} x {r.train.seq_len}, {r.train.optimizer} at lr {r.train.lr:g}, "
                      f"{r.train.schedule} schedule")
            if self.verbose:
                from rnncli.execution.cores import how_a_batch_runs

                header += "\n" + how_a_batch_runs(r.train.batch_size)
            if self.live:
                self.console.print(header, highlight=False)
                self.progress.update(self.task, total=e["total_steps"], completed=e["step"])
            elif self.as_json:
                self.err.print(header, highlight=False)
            elif not self.quiet:
                self._plain(header)
            return
        if self.live:
            self.progress.update(self.task, completed=e["step"], status=self._line(e))
            if kind == "eval":
                mark = "  [green]best[/]" if e.get("improved") else ""
                self.progress.console.print(f"step {e['step']:>6}  {self._line(e)}{mark}", highlight=False)
        elif kind == "eval" or (self.verbose and kind == "progress"):
            if self.as_json:
                record = {k: e[k] for k in ("step", "epoch_fraction", "train_loss", "val_loss", "lr", "tokens_seen",
                                            "tokens_per_s", "seconds")}
                sys.stdout.write(json.dumps({"event": kind, **record}) + "\n")
                sys.stdout.flush()
            elif not self.quiet:
                mark = "  best" if e.get("improved") else ""
                self._plain(f"step {e['step']:>6}  {self._line(e)}{mark}")

    @staticmethod
    def _plain(line: str) -> None:
        """A line as a terminal shows it, for a pipe or a log (no markup, flushed at once)."""
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def finish(self, summary: dict, corpus: list[str]) -> None:
        out = summary["checkpoint"]
        if self.as_json:
            keys = ("checkpoint", "best_checkpoint", "metrics", "train_loss", "val_loss", "best_val_loss", "steps",
                    "tokens_seen", "seconds", "stop_reason", "tokens_per_s", "eval_share", "val_sample_tokens")
            sys.stdout.write(json.dumps({k: summary.get(k) for k in keys}) + "\n")
            sys.stdout.flush()
            return
        if self.quiet:
            return
        console = self.console
        reason = {"done": "finished", "max_time": "time limit reached", "early_stop": "stopped early (no improvement)",
                  "interrupted": "interrupted"}.get(summary["stop_reason"], summary["stop_reason"])
        console.print(f"{reason} after {summary['steps']} steps, {summary['tokens_seen']:,} tokens, "
                      f"{_fmt_time(summary['seconds'])}: train loss {_fmt_loss(summary['train_loss'])}, "
                      f"validation loss {_fmt_loss(summary['val_loss'])} nats/{get_task(self.run.model.task).unit}"
                      + (f" (validation during the run took {summary['eval_share']:.1%} of it, on a sample of "
                         f"{summary['val_sample_tokens']:,} tokens until the end)" if summary.get("val_sample_tokens")
                         else ""), highlight=False)
        console.print(f"saved {out}" + (f" (best: {summary['best_checkpoint']})" if summary.get("best_checkpoint")
                                         else ""), highlight=False)
        if summary["stop_reason"] == "interrupted":
            self.err.print(f"interrupted: resume with  rnncli train {shlex.join(corpus)} --resume {out}",
                           highlight=False)
        else:
            console.print(f"next: {get_task(self.run.model.task).next_hint.format(out=out)}", highlight=False)
