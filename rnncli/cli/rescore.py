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

KALDI_UTTERANCE = r"^(.*)-\d+$"  # (inference/rescore.py's, here for --help without importing it)


@app.command()
@user_errors
def rescore(
    nbest: Annotated[list[str], typer.Argument(help="N-best lists (files, folders, .gz..., `-` for stdin), read "
                                                    "as one: `utt-id-N text` lines (Kaldi), or "
                                                    "`id<TAB>text<TAB>am_cost[<TAB>old_lm_cost]`.",
                                               show_default=False)],
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    weight: Annotated[float, typer.Option(help="With acoustic costs: total = am + w * rnn + (1 - w) * old.",
                                          rich_help_panel=SCORING_OPTIONS)] = 0.5,
    best: Annotated[bool, typer.Option("--best", help="Print only the best hypothesis of each utterance: "
                                                      "`utt-id text`.", rich_help_panel=SCORING_OPTIONS)] = False,
    no_eos: Annotated[bool, typer.Option("--no-eos", help="Leave out -ln P(<EOS> | hypothesis).",
                                         rich_help_panel=SCORING_OPTIONS)] = False,
    unk_cost: Annotated[str | None, typer.Option(help="A cost added for each word outside the vocabulary (beyond "
                                                      "P(<UNK>)), or a file of `word probability` lines (Kaldi's "
                                                      "unk.probs: -ln p each; a word it lacks costs its largest).",
                                                 rich_help_panel=SCORING_OPTIONS, show_default=False)] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Symbols removed from each hypothesis before scoring "
                                                          "(repeat it, or give several separated by spaces): "
                                                          "--ignore '[noise] <SPOKEN_NOISE>'.",
                                                     rich_help_panel=SCORING_OPTIONS, show_default=False)] = None,
    utterance: Annotated[str, typer.Option(help="How an utterance id is found from a hypothesis id: a regular "
                                                "expression whose first group is the utterance (default: Kaldi's "
                                                "utt-id-N; `^(.*)$` when each id is an utterance's).",
                                           rich_help_panel=SCORING_OPTIONS)] = KALDI_UTTERANCE,
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
    Every input line gets one output line; a bad line is named on stderr, costs 1e+30 and makes the
    exit status 1.

    Example: rnncli rescore nbest.txt --best > best.txt
    """
    from functools import partial

    from rnncli.inference.rescore import Rescore, check_utterance_rule, check_weight, unk_cost_option, utterance_of
    from rnncli.jobs.shards import LineSource, preload
    from rnncli.text.data import Corpus

    check_weight(weight)
    check_utterance_rule(utterance)
    cost, costs = unk_cost_option(unk_cost) if unk_cost is not None else (0.0, None)
    symbols = [s for value in ignore or [] for s in value.split()]
    corpus = Corpus(nbest)
    corpus.check_codec()
    path = model_path(model)
    ck = load_model(path, task="lm")
    preload(path, "model", ck)
    announce_compilation()
    utf8_stdout()
    task = Rescore(eos=not no_eos, weight=weight, best=best, as_json=as_json, unk_cost=cost, unk_costs=costs,
                   ignore=symbols, utterance=utterance)
    source = LineSource(corpus, shard_lines, group=partial(utterance_of, pattern=utterance))  # an utterance stays whole
    run_sharded(task, source, path, output, workers, ray, resume, corpus.name, quiet=quiet)
