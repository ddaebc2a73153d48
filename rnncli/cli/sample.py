"""`rnncli sample`: streamed generation; the work is in rnncli/inference/sample.py."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rnncli.cli.common import (
    GENERATION_OPTIONS,
    OUTPUT_OPTIONS,
    QUIET_HELP,
    VERBOSE_HELP,
    announce_compilation,
    app,
    command_line_text,
    load_model,
    model_path,
    print_json,
    user_errors,
    utf8_stdout,
)
from rnncli.cli.jobs import Output, RayAddress, Resume, Workers, run_sharded


@app.command()
@user_errors
def sample(
    model: Annotated[str | None, typer.Option(help="Checkpoint (default: $RNNCLI_MODEL, else the last trained).",
                                              show_default=False)] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate, not counting the prime.",
                                        rich_help_panel=GENERATION_OPTIONS)] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.",
                                               rich_help_panel=GENERATION_OPTIONS)] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample from the k most likely tokens; 0 = all.",
                                       rich_help_panel=GENERATION_OPTIONS)] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling: smallest set with this probability.",
                                         rich_help_panel=GENERATION_OPTIONS)] = 1.0,
    beam: Annotated[int, typer.Option(help="Beam search with this width (most likely continuation).",
                                      rich_help_panel=GENERATION_OPTIONS)] = 0,
    prime: Annotated[str, typer.Option(help="Text the model reads first; the output continues it.",
                                       rich_help_panel=GENERATION_OPTIONS)] = "",
    prime_file: Annotated[str | None, typer.Option(help="Read the prime from a file (`-` for stdin).",
                                                   rich_help_panel=GENERATION_OPTIONS)] = None,
    until_eos: Annotated[bool, typer.Option(help="Stop at the end of the first line/sentence.",
                                            rich_help_panel=GENERATION_OPTIONS)] = False,
    stop: Annotated[str | None, typer.Option(help="Stop once the output contains this text.",
                                             rich_help_panel=GENERATION_OPTIONS)] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Separate samples to draw.",
                                             rich_help_panel=GENERATION_OPTIONS)] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed: same seed, model and options, same output.",
                                             rich_help_panel=GENERATION_OPTIONS, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, rich_help_panel=OUTPUT_OPTIONS)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP,
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sample.",
                                          rich_help_panel=OUTPUT_OPTIONS)] = False,
    workers: Workers = 1,
    ray: RayAddress = None,
    output: Output = None,
    resume: Resume = False,
) -> None:
    """Generate text from a trained model, streamed as it is produced; many samples side by side.

    Example: rnncli sample --temperature 0.8 --prime "The " --length 200 --seed 1
    """
    from rnncli.config import SampleConfig
    from rnncli.errors import UsageError
    from rnncli.inference.sample import encode_prime, generate_samples, sample_record, stdout_writer

    prime = command_line_text([prime], "--prime")[0]
    stop = command_line_text([stop], "--stop")[0] if stop is not None else None
    config = SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                          until_eos=until_eos, stop=stop, num_samples=num_samples, seed=seed)
    config.check()
    if prime_file:
        from rnncli.text.data import Corpus

        prime = Corpus(prime_file).read_text()
    many = num_samples > 1 and beam == 0  # a job: groups of samples generated side by side
    if not many and (workers != 1 or ray or output or resume):
        raise UsageError("--workers, --ray, -o and --resume apply to several samples (-n N, without --beam)")
    path = model_path(model)
    ck = load_model(path, task="lm", int8_in_memory=True)  # sample only builds steps
    announce_compilation()
    _, unknown = encode_prime(ck.tokenizer, prime)
    if verbose:
        m = ck.model
        sys.stderr.write(f"model: {m.cell} {m.layers}x{m.hidden}, {ck.tokenizer.level} vocabulary "
                         f"{m.vocab_size}, trained {ck.state.get('step', 0)} steps\n")
        from rnncli.execution.steps import Steps
        from rnncli.inference.sample import SAMPLE_GROUP
        from rnncli.models.model import Model

        if workers == 1 and not ray:  # (worker processes get their own share of the cores)
            rows = beam or min(num_samples, SAMPLE_GROUP)
            sys.stderr.write(Steps(Model(m), ck.params, rows, length, beam=bool(beam)).describe() + "\n")
    if unknown and not quiet:
        sys.stderr.write(f"warning: the prime has {unknown} token(s) outside the vocabulary; read as <UNK>\n")
    utf8_stdout()
    if many:
        from rnncli.inference.sample import SAMPLE_GROUP, SampleGroups, sample_entropy
        from rnncli.jobs.shards import CountSource, preload

        preload(path, "model", ck)
        task = SampleGroups(prime, config, sample_entropy(seed), as_json)
        run_sharded(task, CountSource(num_samples, SAMPLE_GROUP), path, output, workers, ray, resume, "sample",
                    unit="samples", quiet=quiet, also_reads=(prime_file,))
        return
    for i, s in enumerate(generate_samples(ck, prime, config, None if as_json else stdout_writer)):
        if as_json:
            print_json(sample_record(s))
        else:
            if not s.text.endswith("\n"):
                sys.stdout.write("\n")
            if i < num_samples - 1:
                sys.stdout.write("\n")  # a blank line between samples
            sys.stdout.flush()
