"""`rnncli export` and `rnncli import`: models to and from PyTorch's layout (safetensors files);
the mapping is in rnncli/formats/interop.py."""

from __future__ import annotations

from typing import Annotated

import typer

from rnncli.cli.common import OUTPUT_OPTIONS, app, console, load_model, print_json, user_errors

FORMATS = ("torch", "safetensors", "onnx")


@app.command()
@user_errors
def export(
    model: Annotated[str | None, typer.Argument(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                                show_default=False)] = None,
    to: Annotated[str, typer.Option("--to", help="torch: nn.Embedding/nn.LSTM|GRU|RNN/nn.Linear names; "
                                                 "safetensors: rnncli's own names; onnx: an ONNX graph "
                                                 "(the tokenizer beside it as .tokenizer.json).")] = "torch",
    output: Annotated[str | None, typer.Option("--output", "-o", help="File to write (default: the checkpoint's "
                                               "name with .safetensors).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
) -> None:
    """Export a model (of any task) for other tools: PyTorch's layout or rnncli's (safetensors), or ONNX.

    Example: rnncli export runs/demo-gru.npz --to torch -o demo.safetensors
    """
    import os

    from rnncli.errors import UsageError
    from rnncli.formats import interop, safetensors
    from rnncli.formats.files import check_writable
    from rnncli.training.runfiles import latest_model

    if to not in FORMATS:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}, not {to!r}")
    path = model or latest_model()
    ck = load_model(path)
    if ck.quantization:
        console(stderr=True).print(f"note: {path} holds int8 weights; the export holds their float32 values (each "
                                   "weight q x its scale, exact), which other tools read as any float model",
                                   highlight=False)
    stem = os.path.splitext(path or "model")[0]
    if to == "onnx":
        import json

        from rnncli.formats.files import atomic_write
        from rnncli.formats.onnx_export import to_onnx

        graph = to_onnx(ck)
        output = output or stem + ".onnx"
        beside = os.path.splitext(output)[0] + ".tokenizer.json"
        check_writable(output, "ONNX model", inputs=(path,))
        check_writable(beside, "tokenizer", inputs=(path,))
        atomic_write(output, lambda f: f.write(graph.SerializeToString()), "ONNX model")
        text = json.dumps(interop.tokenizer_document(ck.tokenizer, ck.tokenizer_config), ensure_ascii=False)
        atomic_write(beside, lambda f: f.write(text.encode("utf-8")), "tokenizer")
        written = {"output": output, "format": to, "tokenizer": beside}
    else:
        tensors, metadata = interop.to_torch(ck) if to == "torch" else interop.to_rnncli(ck)
        output = output or stem + (".torch" if to == "torch" else "") + ".safetensors"
        check_writable(output, "export", inputs=(path,))
        safetensors.write(output, tensors, metadata)
        written = {"output": output, "format": to, "tensors": {k: list(v.shape) for k, v in tensors.items()}}
    if as_json:
        print_json(written)
    else:
        console(stderr=True).print(f"wrote {output}" + (f" and {written['tokenizer']}" if "tokenizer" in written
                                                         else ""), highlight=False)


@app.command("import")
@user_errors
def import_(
    file: Annotated[str, typer.Argument(help="A safetensors file: PyTorch names (Embedding -> LSTM/GRU/RNN -> "
                                             "Linear) or an `rnncli export`.", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Checkpoint to write.")] = "imported.npz",
    vocab: Annotated[str | None, typer.Option(help="The model's vocabulary: a file from `rnncli tokenize --save`, "
                                              "a JSON list of tokens in id order, or one token per line. Not needed "
                                              "for a file `rnncli export` wrote.")] = None,
    level: Annotated[str, typer.Option(help="With a vocabulary list: char or word.")] = "word",
    split: Annotated[str, typer.Option(help="A word vocabulary list: how the model's tool cut text into words, "
                                            "whitespace (pytorch/examples, KenLM, SRILM) or words (rnncli's rule).")
                     ] = "whitespace",
    blank_lines: Annotated[str, typer.Option(help="A word vocabulary list: a blank line is one <EOS> (eos, as "
                                                  "pytorch/examples reads text) or nothing (skip).")] = "eos",
    cell: Annotated[str | None, typer.Option(help="Override the cell read from the shapes (rnn-relu, which the "
                                             "shapes cannot tell from rnn).", show_default=False)] = None,
) -> None:
    """Turn a PyTorch language model's weights into an rnncli checkpoint, to sample and score here.

    Example: rnncli import model.safetensors --vocab vocab.json -o imported.npz
    """
    from rnncli.errors import UsageError
    from rnncli.formats import interop, safetensors
    from rnncli.formats.checkpoint import save_checkpoint
    from rnncli.formats.files import check_writable
    from rnncli.training.request import check_loaded

    check_writable(output, "checkpoint", inputs=(file, vocab))
    if file.endswith((".pt", ".pth", ".bin")):
        raise UsageError(f"{file}: rnncli does not unpickle PyTorch files (a .pt file can run code when loaded); "
                         "save the state dict as safetensors: safetensors.torch.save_file(model.state_dict(), "
                         "'model.safetensors')")
    tensors, metadata = safetensors.read(file)
    ck = interop.import_model(tensors, metadata, file, vocab, level, cell, split, blank_lines)
    check_loaded(ck, file)
    save_checkpoint(output, ck)
    m = ck.model
    console(stderr=True).print(f"wrote {output}: {m.cell} {m.layers}x{m.hidden}, vocabulary {m.vocab_size}",
                               highlight=False)
