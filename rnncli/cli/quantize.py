"""`rnncli quantize`: a model's weights in eight bits, and what that costs on a text
(inference/quantize.py; the format in formats/int8.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import OUTPUT_OPTIONS, app, console, load_model, model_path, print_json, user_errors


@app.command()
@user_errors
def quantize(
    model: Annotated[str | None, typer.Argument(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                                show_default=False)] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Checkpoint to write (default: the model's "
                                               "name with -int8.npz).", show_default=False)] = None,
    scheme: Annotated[str, typer.Option(help="Scales: row (one per output unit and matrix) or block32 (one per 32 "
                                             "weights along each unit's inputs).")] = "row",
    activations: Annotated[str | None, typer.Option(help="Generation's activations: int8 (products of bytes; the "
                                                         "default where the CPU has AVX-512 VNNI) or float32. "
                                                         "Scoring reads float32 activations either way.",
                                                    show_default=False)] = None,
    eval_file: Annotated[str | None, typer.Option("--eval", help="Compare with the float model on this text ('-': "
                                                  "stdin): perplexity of both, KL divergence, top-token agreement.",
                                                  show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written (and measured) as JSON.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Store a model's weights in 8 bits (a quarter of the bytes); every command that runs a model takes it.

    Example: rnncli quantize runs/demo.npz -o runs/demo-int8.npz --eval corpora/demo.txt
    """
    import os

    from rnncli.errors import UsageError
    from rnncli.formats.checkpoint import save_checkpoint
    from rnncli.formats.files import check_writable
    from rnncli.inference.quantize import compare, default_activations, quantized, sizes
    from rnncli.tasks import get_task

    path = model_path(model)
    ck = load_model(path)
    if ck.quantization:
        raise UsageError(f"{path} is quantized already ({ck.quantization['scheme']} scales); quantize the float "
                         "model it came from")
    output = output or os.path.splitext(path or "model")[0] + "-int8.npz"
    check_writable(output, "checkpoint", inputs=(path, eval_file))
    if eval_file is not None and not get_task(ck.model.task).stream:
        raise UsageError(f"--eval measures a language model's perplexity; compare two {ck.model.task} models with "
                         "`rnncli evaluate` instead")
    activations = activations or default_activations(ck.model.task)
    out = quantized(ck, scheme, activations)
    record = {"output": output, "scheme": scheme, "activations": activations, **sizes(ck, out)}
    if eval_file is not None:
        from rnncli.cli.common import announce_compilation
        from rnncli.text.data import Corpus
        from rnncli.text.store import corpus_ids

        announce_compilation()
        corpus = Corpus([eval_file])
        _, ids = corpus_ids(corpus, ck.tokenizer, ck.tokenizer_config, None, lambda note: None)
        record["eval"] = {"file": corpus.name, **compare(ck, out, ids, seq_len=ck.train.seq_len)}
        if out.model.step_int8:
            record["eval_generation"] = compare(ck, out, ids, seq_len=ck.train.seq_len, generation=True)
    save_checkpoint(output, out)
    record["file_bytes"], record["float_file_bytes"] = os.path.getsize(output), os.path.getsize(path)
    if as_json:
        print_json(record)
        return
    err = console(stderr=True)
    ratio = record["weight_bytes_quantized"] / record["weight_bytes"]
    err.print(f"wrote {output} ({record['file_bytes']:,} bytes): int8 weights with {scheme} scales, "
              f"{record['weight_bytes_quantized']:,} bytes against {record['weight_bytes']:,} in float32 "
              f"({ratio:.2f}); generation in {activations} activations", highlight=False)
    if "eval" in record:
        print(f"{record['eval']['file']}: {record['eval']['tokens']:,} tokens, against the float model")
        for key, what in (("eval", "scoring"), ("eval_generation", "generation (int8 activations)")):
            if key in record:
                e = record[key]
                print(f"  {what}\n"
                      f"    perplexity  float {e['perplexity']:.4f}   int8 {e['perplexity_quantized']:.4f}   "
                      f"({100 * e['relative_change']:+.3f} %)\n"
                      f"    mean KL     {e['mean_kl']:.6f} nats\n"
                      f"    same top    {100 * e['same_top']:.2f} % of positions")
