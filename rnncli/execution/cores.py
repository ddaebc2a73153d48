"""A batch on every core: its rows in shards, one per core, each shard's whole pass on its own core.

The rows of a batch never meet in a recurrence: only the weights' gradients sum over them. So a
batch splits into one shard of rows per core, each shard runs its whole forward and backward pass
on its own core with BLAS on one thread, and the gradients are summed, weighted by each shard's
share of the scored targets (the loss is their mean). Every model runs its batches this way (the
language model, the classifier and tagger, the translator), and `sample -n` its samples.

Why: with two threads, OpenBLAS hands every small per-step product over to the other core and back,
64-100 times per chunk, and the engine's own per-step product (kernels/packed.py) runs on one core.
Measured (AMD EPYC, 2 cores; bench/README.md): a training step of the small lstm (1 x 128, batch
32) 11.4 -> 8.5 ms with OpenBLAS's products, the char-rnn lstm (2 x 512) 432 -> 394 ms.
Results equal the whole batch's up to the order of the sums (float rounding): tests/test_model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.kernels.blas import blas_threads, on_each_core, one_blas_thread
from rnncli.kernels.output import RowGradient

# A shard of 2 rows or more pays, for training, scoring and samples alike: the per-step products run
# in our packed kernel (a last tile of 1-3 rows included) and the input-side products too
# (recurrent.input_product). Measured (AMD EPYC, char-rnn lstm), tokens/s, two shards against the
# batch whole on OpenBLAS's two threads: batch 4 train 5.3-6.0k -> 6.5k, score 16.2-17.2k -> 20.6-21.3k;
# batch 6 train 5.4-5.8k -> 7.9-8.2k, score 15.4-15.9k -> 27.3-27.7k; batch 8 train 6.0-6.4k -> 8.6-8.8k,
# score 17.1-17.3k -> 28.7-29.2k. Samples (`sample -n`), tokens/s over all rows, one core against two
# shards: lstm -n 4 / 6 / 8 / 15 14.9k / 12.7k / 15.0k / 11.3k -> 18.7k / 27.0k / 30.1k / 22.0k, gru
# 19.9k / 17.5k / 20.4k / 16.8k -> 26.6k / 36.6k / 40.1k / 28.8k. A few samples (up to 4 rows) and a
# beam run whole, their products shared with a helper instead where it can run (`step_packing`); a
# beam never in shards (it steps from Python: a hand-over per step costs more than it saves).
MIN_SHARD_ROWS = 2


def batch_shards(B: int) -> list[slice]:
    """The shards of a batch of B rows, one per core the BLAS may use (a worker process given one
    core by `--workers`, or a user's OPENBLAS_NUM_THREADS=1, gets none), each of MIN_SHARD_ROWS rows
    or more; [] when it stays whole (one core, a batch of 2-3 rows, or a BLAS whose threads cannot be
    set)."""
    n = min(blas_threads(), B // MIN_SHARD_ROWS)
    if n < 2:
        return []
    bounds = [B * k // n for k in range(n + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(n)]


HELPER_MIN_STEPS = (0, 2000, 100, 100, 100)  # by rows (1-4): the steps that repay the helper's start (below)


def step_packing(rows: int, tokens: int, params: dict | None = None, beam: bool = False):
    """How the single step holds its matrices (recurrent.Packing) for `rows` rows stepped together
    (samples, a beam's hypotheses) for up to `tokens` steps, with the model's `params`. Measured at
    the char-rnn size on an AMD EPYC, tokens/s over all rows:

    - Samples, up to a tile of the packed kernel's rows (4): packed and each product shared with a
      helper on the second core, its blocks of columns split between the cores
      (kernels/two_cores.py; lstm -n 1 / 2 / 3 / 4 10.4k / 16.7-18.7k / 23.2-26.2k / 27.0k, against
      7.5k / 9.4-10.1k / 13.0-14.4k / 18.3-19.5k in shards or OpenBLAS, gru -n 4 32.8k against
      25.7k), when that pays: a matrix of the step large enough to share (two_cores.SHARED_MIN_BYTES;
      the small size's are not: it ran twice as fast on OpenBLAS's threads as shared, and on one
      core through the one-row kernel it matches the code that used OpenBLAS: small batch-1
      generate 0.96-1.03x in the adjacent runs of 2026-12-06), the sample long enough
      to repay the start (packing the weights and loading the helper's kernel, ~50 ms for the lstm;
      one row saves 12-43 us a token, by cell: 1.4k-5k tokens to break even; more rows 0.7-0.9 ms a
      step: 55-70 steps), and the helper's kernel compiled.
    - More samples: packed, in shards (one per core, `batch_shards`), each shard's steps in one call
      with no hand-over between the cores: lstm -n 5 / 6 / 8 23.0k / 28.5k / 30.5k against 20.5k /
      24.2k / 28.3k with the helper (whose gate maths run on one core), gru -n 6 / 8 36.8k / 39.5k
      against 23.8k / 28.1k.
    - A beam (its choice made between steps, in Python): shared with the helper whenever that can
      run, for any width: lstm beam 2 / 4 / 8 / 16 / 32 0.87 / 0.66 / 0.70 / 1.06 / 1.65 ms a step in
      shards -> 0.17 / 0.20 / 0.34 / 0.73 / 1.22 ms (a hand-over to the other core and back at every
      step costs ~70 us); beam 64 the same either way (2.9 ms lstm, 2.2-2.3 gru). Else on one core,
      never in shards: at the small size (1 x 128) beam 4 / 8 / 16 / 64 0.135 / 0.136 / 0.133 / 0.255
      ms a step in shards, 0.030 / 0.044 / 0.073 / 0.244 on one core.
    - Else packed, on one core a shard (OpenBLAS's products of a few rows were slow: lstm -n 4 / 8 /
      15, packed on one core 13.4k / 12.7k / 9.8k against OpenBLAS's 3.8k / 7.2k / 7.5k), one row by
      the packed kernel's one-row form: samples in shards (`sample.generate_rows`), a beam on one core.
    Every form computes the same numbers (recurrent.Packing): the choice is speed only."""
    from rnncli.kernels.packed import TILE_ROWS
    from rnncli.kernels.two_cores import new_mailbox

    wanted = beam or (rows <= TILE_ROWS and tokens >= HELPER_MIN_STEPS[rows])
    if wanted and _helper_can_run(params):
        return new_mailbox()
    return True


def _helper_can_run(params: dict | None) -> bool:
    """Whether a helper on the second core can share the step's products: two cores, a matrix large
    enough to share, and the helper's kernel compiled (two_cores.helper_compiled)."""
    from rnncli.kernels.two_cores import SHARED_MIN_BYTES, helper_compiled

    if blas_threads() < 2 or not params:
        return False
    products = [p for name, p in params.items() if p.ndim == 2 and name != "embed.weight"]  # (a row of it is read)
    return max(p.nbytes for p in products) >= SHARED_MIN_BYTES and helper_compiled(products[0].dtype)


def how_a_batch_runs(B: int) -> str:
    """One line for --verbose: which code computes which product, and on how many cores a batch of
    B rows runs."""
    from rnncli.kernels.packed import VECTOR_BITS

    shards = batch_shards(B)
    where = (f"{len(shards)} shards of {B // len(shards)}+ rows, one per core, BLAS on one thread each" if shards
             else "whole, BLAS on its own threads")
    return (f"engine: per-step, input-side and output-layer products in rnncli's packed kernel ({VECTOR_BITS}-bit "
            f"vectors), the weight gradients in OpenBLAS (scipy's); a batch of {B} rows runs {where}")


def how_samples_run(rows: int, tokens: int = 0, params: dict | None = None, beam: bool = False) -> str:
    """One line for `sample --verbose`: how `rows` samples (or a beam's hypotheses) stepped together
    for `tokens` steps run (`step_packing`)."""
    from rnncli.kernels.packed import VECTOR_BITS

    packing = step_packing(rows, tokens, params, beam)
    kernel = f"rnncli's packed kernel ({VECTOR_BITS}-bit vectors)"
    if packing is True:
        shards = [] if beam else batch_shards(rows)
        where = f"{len(shards)} shards of {rows // len(shards)}+ rows, one per core" if shards else "on one core"
        return f"engine: {rows} row{'s' if rows != 1 else ''} at a time, {where}, the products in {kernel}"
    return (f"engine: {rows} row(s) at a time, the products of 512 KB or more shared by both cores (a helper "
            f"thread on the second one), in {kernel}")


def on_cores(work, items: list) -> list:
    """[work(item) for item in items], each on a core of its own, BLAS on one thread (blas.py)."""
    with one_blas_thread():
        return on_each_core(work, items)


@dataclass
class ShardedCache:
    """The caches of a batch run as shards: each shard's rows, cache and share of the scored targets."""

    shards: list[slice]
    parts: list
    shares: list[float]
    dstate0: list | None = None  # the language model's: each layer's initial-state gradient, joined


def loss_by_shards(shards: list[slice], forward, targets: np.ndarray) -> tuple[float, list, list[float]]:
    """A batch's forward pass by its shards, each on a core of its own: forward(rows) -> (mean
    loss of those rows, ...). -> the batch's mean loss (the shards' weighted by their share of the
    scored targets), each shard's results, the shares."""
    parts = on_cores(forward, shards)
    shares = target_shares(targets, shards)
    return sum(share * p[0] for share, p in zip(shares, parts, strict=True)), parts, shares


def gradients_by_shards(backward, cache: ShardedCache) -> dict:
    """The batch's gradients from its shards' (`loss_by_shards`): backward(a shard's cache) -> its
    gradients, each on a core, summed weighted by the shards' shares."""
    return weighted_sum(on_cores(backward, cache.parts), cache.shares)


def target_shares(targets: np.ndarray, shards: list[slice]) -> list[float]:
    """Each shard's share of the scored targets (B last: (B,) or (T, B)); negative ones count for nothing."""
    counted = [int((targets[..., rows] >= 0).sum()) for rows in shards]
    return [n / max(sum(counted), 1) for n in counted]


def state_rows(state: list, rows: slice) -> list:
    """Each layer's state (a tuple of (B, H) arrays) at `rows`."""
    return [tuple(np.ascontiguousarray(a[rows]) for a in layer) for layer in state]


def joined_states(states: list[list]) -> list:
    """Each layer's state of every shard, joined along the batch."""
    return [tuple(np.concatenate(arrays) for arrays in zip(*layers, strict=True))
            for layers in zip(*states, strict=True)]


def mask_rows(masks: list | None, rows: slice) -> list | None:
    """Dropout masks, one (T, B, width) per level, at `rows`."""
    return None if masks is None else [np.ascontiguousarray(m[:, rows]) for m in masks]


def weighted_sum(grads: list[dict], shares: list[float]) -> dict:
    """sum_k shares[k] * grads[k], name by name (an embedding's row gradient over the union of rows)."""
    total = {}
    for name in grads[0]:
        parts = [g[name] for g in grads]
        if all(isinstance(part, RowGradient) for part in parts):
            total[name] = RowGradient.weighted_sum(parts, shares)
            continue
        # dense, or some shards' row gradients and others' dense (a language model's embedding: by its
        # table when a shard's positions outnumber the vocabulary, else by rows)
        parts = [part.dense() if isinstance(part, RowGradient) else part for part in parts]
        total[name] = parts[0] * parts[0].dtype.type(shares[0])
        for part, share in zip(parts[1:], shares[1:], strict=True):
            total[name] += part * parts[0].dtype.type(share)
    return total
