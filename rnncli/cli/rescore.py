"""`rnncli rescore`: n-best lists rescored with the model; the work is in rnncli/rescore.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import (
    OUTPUT_OPTIONS,
    SCORING_OPTIONS,
    announce_compilation,
    app,
    load_model,
    print_json,
    user_errors,
    utf8_stdout,
)


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
) -> None:
    """Rescore an n-best list: each hypothesis's cost -ln P under the model, as Kaldi writes it.

    The cost is the natural log with <EOS> included; with acoustic costs, the interpolated total.

    Example: rnncli rescore nbest.txt --best > best.txt
    """
    from rnncli.data import Corpus
    from rnncli.rescore import best_per_utterance, check_weight
    from rnncli.rescore import rescore as run

    check_weight(weight)
    corpus = Corpus(nbest)
    corpus.check_codec()
    ck = load_model(model, task="lm")
    announce_compilation()
    utf8_stdout()
    hyps = run(ck, corpus.lines(), corpus.name, eos=not no_eos)
    if best:
        hyps = best_per_utterance(hyps, weight)
    for h in hyps:
        if as_json:
            record = {"id": h.id, "utterance": h.utterance, "text": h.text, "rnn_cost": h.rnn}
            if h.am is not None:
                record.update(am_cost=h.am, old_lm_cost=h.old, total=h.total(weight))
            print_json(record)
        elif best:
            print(f"{h.utterance} {h.text}")
        elif h.am is not None:
            print(f"{h.id}\t{h.rnn:.6f}\t{h.total(weight):.6f}")
        else:
            print(f"{h.id} {h.rnn:.6f}")
