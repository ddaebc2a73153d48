"""Many rows' single steps (samples side by side, a beam's hypotheses), run as the plan says.

Above this seam a step is maths: `Model.step_weights` gives each cell's registered single step its
weights, `generate` and `model_step` (kernels/generate.py) advance every row by a token. Here is
where they run: in shards of rows, one per core; or whole, each product's blocks of columns shared
with a helper thread on the second core (kernels/two_cores.py); or on one core. `Steps` chooses once
for a run of steps and keeps what the choice needs (the weights in that form, the shards, the
helper's mailbox); nothing above it knows which. Every form computes the same numbers (recurrent.
Packing: every product the packed kernel's, summed in k order), so the choice is speed only.

The choice, measured at the char-rnn size on an AMD EPYC, tokens/s over all rows:

- Samples, up to a tile of the packed kernel's rows (4): packed and each product shared with a
  helper on the second core (lstm -n 1 / 2 / 3 / 4 10.4k / 16.7-18.7k / 23.2-26.2k / 27.0k,
  against 7.5k / 9.4-10.1k / 13.0-14.4k / 18.3-19.5k in shards or OpenBLAS, gru -n 4 32.8k against
  25.7k), when that pays: a matrix of the step large enough to share (two_cores.SHARED_MIN_BYTES;
  the small size's are not: it ran twice as fast on OpenBLAS's threads as shared, and on one core
  through the one-row kernel, the first layer's input products from a table, it runs ahead of the
  code that used OpenBLAS: small batch-1 generate 0.97-1.17x, 2026-12-07), the sample long enough
  to repay the start (packing the weights and loading the helper's kernel, ~50 ms for the lstm;
  one row saves 12-43 us a token, by cell: 1.4k-5k tokens to break even; more rows 0.7-0.9 ms a
  step: 55-70 steps), and the helper's kernel compiled.
- More samples: packed, in shards (one per core, `Plan.shards`), each shard's steps in one call with
  no hand-over between the cores: lstm -n 5 / 6 / 8 23.0k / 28.5k / 30.5k against 20.5k / 24.2k /
  28.3k with the helper (whose gate maths run on one core), gru -n 6 / 8 36.8k / 39.5k against 23.8k
  / 28.1k.
- A beam (its choice made between steps, in Python): shared with the helper whenever that can run,
  for any width: lstm beam 2 / 4 / 8 / 16 / 32 0.87 / 0.66 / 0.70 / 1.06 / 1.65 ms a step in shards
  -> 0.17 / 0.20 / 0.34 / 0.73 / 1.22 ms (a hand-over to the other core and back at every step costs
  ~70 us); beam 64 the same either way (2.9 ms lstm, 2.2-2.3 gru). Else on one core, never in
  shards: at the small size (1 x 128) beam 4 / 8 / 16 / 64 0.135 / 0.136 / 0.133 / 0.255 ms a step in
  shards, 0.030 / 0.044 / 0.073 / 0.244 on one core.
- Else packed, on one core a shard (OpenBLAS's products of a few rows were slow: lstm -n 4 / 8 / 15,
  packed on one core 13.4k / 12.7k / 9.8k against OpenBLAS's 3.8k / 7.2k / 7.5k), one row by the
  packed kernel's one-row form.
"""

from __future__ import annotations

import numpy as np

from rnncli.execution.cores import on_cores
from rnncli.execution.plan import Plan, cores_here

HELPER_MIN_STEPS = (0, 2000, 100, 100, 100)  # by rows (1-4): the steps that repay the helper's start (above)
# Once this process has run a cell's steps with the helper, its kernels are loaded and its start is a
# hand-over to a waiting thread: a few steps repay it (a server, a library caller sampling again).
# Measured (AMD EPYC, char-rnn lstm): a fresh `sample --length 1000` 0.93-1.03 s on one core against
# 1.10-1.13 s with the helper (its kernels' load); in a warm process 200 tokens 219-227 -> 143-151 us a token.
HELPER_MIN_STEPS_WARM = 32
_helper_ran: set[tuple[str, str]] = set()  # (cell, number type) whose steps ran with the helper here
BURST = 32  # tokens a generating call runs before it returns (output streams between them)
HELPER_BURST = 256  # with the helper, whose start each call costs: 20k tokens of the char-rnn rnn 1.64 -> 1.57 s


def step_form(rows: int, tokens: int, params: dict | None = None, beam: bool = False, warm: bool = False):
    """How the single step holds its matrices (recurrent.Packing) for `rows` rows stepped together
    for up to `tokens` steps, with the model's `params`: a mailbox (two_cores.new_mailbox: shared
    with a helper) where that pays (above; `warm`: the helper already ran this cell here), else True
    (packed, on one core a shard)."""
    from rnncli.kernels.packed import TILE_ROWS
    from rnncli.kernels.two_cores import new_mailbox

    needed = HELPER_MIN_STEPS_WARM if warm else HELPER_MIN_STEPS[min(rows, TILE_ROWS)]
    wanted = beam or (rows <= TILE_ROWS and tokens >= needed)
    if wanted and _helper_can_run(params):
        return new_mailbox()
    return True


def _helper_can_run(params: dict | None) -> bool:
    """Whether a helper on the second core can share the step's products: two cores in the plan, a
    matrix large enough to share, and the helper's kernel compiled (two_cores.helper_compiled)."""
    from rnncli.kernels.two_cores import SHARED_MIN_BYTES, helper_compiled

    if cores_here() < 2 or not params:
        return False
    products = [p for name, p in params.items() if p.ndim == 2 and name != "embed.weight"]  # (a row of it is read)
    return max(p.nbytes for p in products) >= SHARED_MIN_BYTES and helper_compiled(products[0].dtype)


class Steps:
    """`rows` rows of `model` (a language model or a decoder) stepped together for up to `tokens`
    steps: its step weights in the chosen form (`weights`, for kernels/generate.py), and the runs."""

    def __init__(self, model, params: dict, rows: int, tokens: int, beam: bool = False, cores: int | None = None):
        """`cores`: at most this many (default: the plan's); 1 steps every call's rows on the calling
        thread's core, so that threads of their own may each step theirs (a server's lanes)."""
        self.key = (model.config.cell, str(next(iter(params.values())).dtype))
        self.cores = cores_here() if cores is None else min(cores, cores_here())
        form = step_form(rows, tokens, params, beam, warm=self.key in _helper_ran) if self.cores > 1 else True
        self.mailbox = form if isinstance(form, np.ndarray) else None  # the helper's, when it shares the products
        if model.config.step_int8:  # the model's own arithmetic (kernels/int8.py), in the form chosen
            from rnncli.kernels.int8 import Int8Steps

            form = Int8Steps(model.config.step_int8, self.mailbox)
        self.form = form
        self.weights = model.step_weights(params, packed=form)
        self.shards = [] if self.mailbox is not None or beam else Plan(self.cores).shards(rows)
        self.burst = HELPER_BURST if self.mailbox is not None else BURST
        self.rows, self.beam = rows, beam

    def resize(self, rows: int) -> None:
        """Step `rows` rows from now on (a server's batch changes between bursts): their shards; the
        weights keep their form."""
        if self.mailbox is None and not self.beam:
            self.shards = Plan(self.cores).shards(rows)
        self.rows = rows

    def run(self, work, like: np.ndarray):
        """work() (which steps with `weights`), the helper serving beside it on the second core when
        the products are shared; `like` an array of the steps' number type."""
        if self.mailbox is None:
            return work()
        from rnncli.kernels.two_cores import with_helper

        result = with_helper(self.mailbox, work, like)
        _helper_ran.add(self.key)
        return result

    def generate(self, h, c, context, uniforms, temperature, top_k, top_p, until_eos, finished, out, lps) -> int:
        """kernels/generate.py's `generate` for every row (its arguments after the weights; the
        sampling settings one per row, `row_settings`), in this run's form: one shard per core, each
        core generating its shard's rows on its own with no hand-over at every token (the rows of a
        batch of samples never meet), or all rows at once.
        The same uniforms per row: the same samples, whichever. -> the steps run (a shard that
        stopped early, all its rows ended, is filled with <EOS> up to the others)."""
        from rnncli.kernels.generate import generate
        from rnncli.text.tokenizers import EOS

        def whole() -> int:
            return generate(*self.weights, h, c, context, uniforms, temperature, top_k, top_p, until_eos, finished,
                            out, lps)

        if not self.shards:
            return self.run(whole, h)

        def part(rows: slice) -> int:
            h_part, c_part = np.ascontiguousarray(h[:, rows]), np.ascontiguousarray(c[:, rows])  # (L, rows, H)
            got = generate(*self.weights, h_part, c_part, np.ascontiguousarray(context[:, rows]), uniforms[rows],
                           temperature[rows], top_k[rows], top_p[rows], until_eos, finished[rows], out[rows], lps[rows])
            h[:, rows], c[:, rows] = h_part, c_part
            return got

        steps = on_cores(part, self.shards)
        for rows, got in zip(self.shards, steps, strict=True):
            out[rows, got:max(steps)] = EOS
        return max(steps)

    def describe(self) -> str:
        """One line for `sample --verbose`: how the rows run."""
        from rnncli.kernels.int8 import Int8Steps
        from rnncli.kernels.vectors import VECTOR_BITS

        kernel = f"rnncli's packed kernel ({VECTOR_BITS}-bit vectors)"
        if isinstance(self.form, Int8Steps):
            from rnncli.kernels.int8 import BYTE_DOTS

            kernel = "int8 (" + ("AVX-512 VNNI's byte dot products" if BYTE_DOTS else "exact float sums, no VNNI") + ")"
        rows = self.rows
        if self.mailbox is None:
            shards = self.shards
            where = f"{len(shards)} shards of {rows // len(shards)}+ rows, one per core" if shards else "on one core"
            return f"engine: {rows} row{'s' if rows != 1 else ''} at a time, {where}, the products in {kernel}"
        return (f"engine: {rows} row(s) at a time, the products of 512 KB or more shared by both cores (a helper "
                f"thread on the second one), in {kernel}")
