"""`rnncli rescore`: n-best lists rescored with the model; the work is in rnncli/inference/rescore.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    OUTPUT_OPTIONS,
    QUIET_HELP,
    SCORING_OPTIONS,
    announce_compilation,
    app,
    load_model,
    model_path,
    user_errors,
    utf8_stdout,
)
from rnncli.cli.jobs import Output, RayAddress, Resume, ShardLines, Workers, run_sharded
from rnncli.jobs.shards import SHARD_LINES


@app.command()
@user_errors
def rescore(
    nbest: Annotated[str, typer.Argument(help="N-best list (`-` for stdin): `utt-id-N text` lines (Kaldi), or "
                                              "`id<TAB>text<TAB>am_cost[<TAB>old_lm_cost]`.", show_default=False)],
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    weight: Annotated[float, typer.Option(help="With acoustic costs: total = am + w * rnn + (1 - w) * old.",
                                          rich_help_panel=SCORING_OPTIONS)] = 0.5,
    best: Annotated[bool, typer.Option("--best", help="Print only the best hypothesis of each utterance: "
                                                      "`utt-id text`.", rich_help_panel=SCORING_OPTIONS)] = False,
    no_eos: Annotated[bool, typer.Option("--no-eos", help="Leave out -ln P(<EOS> | hypothesis).",
                                         rich_help_panel=SCORING_OPTIONS)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    workers: Workers = 1,
    ray: RayAddress = None,
    output: Output = None,
    resume: Resume = False,
    shard_lines: ShardLines = SHARD_LINES,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Rescore an n-best list: each hypothesis's cost -ln P under the model, as Kaldi writes it.

    The cost is the natural log with <EOS> included; with acoustic costs, the interpolated total.

    Example: rnncli rescore nbest.txt --best > best.txt
    """
    from rnncli.inference.rescore import Rescore, check_weight, utterance_of
    from rnncli.jobs.shards import LineSource, preload
    from rnncli.text.data import Corpus

    check_weight(weight)
    corpus = Corpus(nbest)
    corpus.check_codec()
    path = model_path(model)
    ck = load_model(path, task="lm")
    preload(path, "model", ck)
    announce_compilation()
    utf8_stdout()
    task = Rescore(eos=not no_eos, weight=weight, best=best, as_json=as_json)
    source = LineSource(corpus, shard_lines, group=utterance_of)  # an utterance's hypotheses stay together
    run_sharded(task, source, path, output, workers, ray, resume, corpus.name, quiet=quiet)
