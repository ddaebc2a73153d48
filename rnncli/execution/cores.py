"""A batch on every core: its rows in shards, one per core, each shard's whole pass on its own core.

The rows of a batch never meet in a recurrence: only the weights' gradients sum over them. So a
batch splits into one shard of rows per core, each shard runs its whole forward and backward pass
on its own core with BLAS on one thread, and the gradients are summed, weighted by each shard's
share of the scored targets (the loss is their mean). Every model runs its batches this way (the
language model, the classifier and tagger, the translator), and `sample -n` its samples
(steps.py). A large product's rows are split over the cores the same way (`rows_product`). How
many cores: the process's plan (plan.py), given, never read back from the BLAS's state.

Why: with two threads, OpenBLAS hands every small per-step product over to the other core and back,
64-100 times per chunk, and the engine's own per-step product (kernels/packed.py) runs on one core.
Measured (AMD EPYC, 2 cores; bench/README.md): a training step of the small lstm (1 x 128, batch
32) 11.4 -> 8.5 ms with OpenBLAS's products, the char-rnn lstm (2 x 512) 432 -> 394 ms.
Results equal the whole batch's up to the order of the sums (float rounding): tests/test_model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.execution.plan import Plan, cores_here
from rnncli.kernels.blas import on_each_core, one_blas_thread
from rnncli.kernels.output import RowGradient
from rnncli.kernels.packed import GROUP_ROWS, product_in_groups
from rnncli.kernels.packing import identity, keeping, pack, packed_now
from rnncli.kernels.update import weighted_pair


def batch_shards(B: int) -> list[slice]:
    """The shards of a batch of B rows, one per core of the plan (plan.py: a worker process given
    one core by `--workers`, or a user's OPENBLAS_NUM_THREADS=1, gets none; nor does a core's own
    part of work already spread), each of plan.MIN_SHARD_ROWS rows or more; [] when it stays whole."""
    return Plan(cores_here()).shards(B)


def rows_product(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (M, K) @ W (K, F), any M, by the packed kernel (kernels/packed.py): W packed, 16 rows of x
    at a time against every block (`product_in_groups`), on one core, or the rows split over the
    plan's cores. Every product whose rows are a model's positions goes through here (the input
    side, the output layer and their gradients w.r.t. the rows), never through a BLAS: OpenBLAS
    rounds a row differently depending on how many rows share the call and on the CPU's kernel
    family (Haswell, SkylakeX, Zen), so its rows' numbers would depend on how the work was split and
    where it ran; here every number is one chain of fused multiply-adds in k order, whoever
    computes it."""
    x = np.ascontiguousarray(x)
    P = pack(W)
    out = np.empty((x.shape[0], W.shape[1]), dtype=x.dtype)
    cores = min(cores_here(), x.shape[0] // GROUP_ROWS)
    if cores < 2:
        product_in_groups(x, P, out)
        return out
    bounds = [x.shape[0] * k // cores // GROUP_ROWS * GROUP_ROWS for k in range(cores)] + [x.shape[0]]
    on_cores(lambda k: product_in_groups(x[bounds[k]:bounds[k + 1]], P, out[bounds[k]:bounds[k + 1]]),
             list(range(cores)))
    return out


def how_a_batch_runs(B: int) -> str:
    """One line for --verbose: which code computes which product, and on how many cores a batch of
    B rows runs."""
    from rnncli.kernels.vectors import VECTOR_BITS

    shards = batch_shards(B)
    where = (f"{len(shards)} shards of {B // len(shards)}+ rows, one per core, BLAS on one thread each" if shards
             else "whole, BLAS on its own threads")
    return (f"engine: per-step, input-side and output-layer products in rnncli's packed kernel ({VECTOR_BITS}-bit "
            f"vectors), the weight gradients in OpenBLAS (scipy's); a batch of {B} rows runs {where}")


def on_cores(work, items: list) -> list:
    """[work(item) for item in items], each on a core of its own, BLAS on one thread (blas.py)."""
    with one_blas_thread():
        return on_each_core(work, items)


class PackedOnce:
    """A sharded pass's packed weights (kernels/packing.py), packed once for all its shards and
    spread over the cores before they start, not once by every shard: those the same pass asked for
    the last time it ran (the first time, each shard packs what it asks for and they share it).
    Packing streams each matrix from memory, and two cores share that bandwidth: packing 3 of the
    char-rnn's 512 x 2048 matrices from memory took 1.66 ms on one core and 1.53 on two (AMD EPYC),
    so the gain is the packs not repeated (10 a step of the char-rnn lstm, each shard's), not the
    spreading. A model keeps one per kind of pass."""

    def __init__(self):
        self.asked: list[np.ndarray] = []  # the matrices (views of the weights) the last pass packed

    def on_cores(self, work, items: list) -> list:
        """`on_cores(work, items)`, every shard's `pack` sharing this pass's packed matrices."""
        kept: dict = {}
        if len(items) > 1 and cores_here() > 1:
            def pack_one(W: np.ndarray) -> None:
                kept[identity(W)] = (W, packed_now(W))

            whole_on_cores(pack_one, self.asked, lambda W: W.size)
        with keeping(kept):
            results = on_cores(work, items)
        self.asked = [W for W, _ in kept.values()]
        return results


@dataclass
class ShardedCache:
    """The caches of a batch run as shards: each shard's rows, cache and share of the scored targets."""

    shards: list[slice]
    parts: list
    shares: list[float]
    dstate0: list | None = None  # the language model's: each layer's initial-state gradient, joined


def loss_by_shards(shards: list[slice], forward, targets: np.ndarray,
                   packs: PackedOnce | None = None) -> tuple[float, list, list[float]]:
    """A batch's forward pass by its shards, each on a core of its own: forward(rows) -> (mean
    loss of those rows, ...). -> the batch's mean loss (the shards' weighted by their share of the
    scored targets), each shard's results, the shares. `packs`: the weights packed once for all."""
    parts = (packs or PackedOnce()).on_cores(forward, shards)
    shares = target_shares(targets, shards)
    return sum(share * p[0] for share, p in zip(shares, parts, strict=True)), parts, shares


def gradients_by_shards(backward, cache: ShardedCache, packs: PackedOnce | None = None) -> dict:
    """The batch's gradients from its shards' (`loss_by_shards`): backward(a shard's cache) -> its
    gradients, each on a core, summed weighted by the shards' shares."""
    return weighted_sum((packs or PackedOnce()).on_cores(backward, cache.parts), cache.shares)


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
    """sum_k shares[k] * grads[k], name by name (an embedding's row gradient over the union of
    rows); the dense sums in one pass per pair of shards, their pieces spread over the cores
    (`elementwise_on_cores`: the same numbers, however many)."""
    total, pairs = {}, []
    for name in grads[0]:
        parts = [g[name] for g in grads]
        if all(isinstance(part, RowGradient) for part in parts):
            total[name] = RowGradient.weighted_sum(parts, shares)
            continue
        # dense, or some shards' row gradients and others' dense (a language model's embedding: by its
        # table when a shard's positions outnumber the vocabulary, else by rows)
        parts = [np.ascontiguousarray(part.dense() if isinstance(part, RowGradient) else part) for part in parts]
        total[name] = np.empty_like(parts[0])
        pairs.append((total[name].reshape(-1), [part.reshape(-1) for part in parts]))

    def add(out, *parts):
        if len(parts) == 1:
            np.multiply(parts[0], out.dtype.type(shares[0]), out=out)
            return
        weighted_pair(out, parts[0], shares[0], parts[1], shares[1])
        for part, share in zip(parts[2:], shares[2:], strict=True):
            weighted_pair(out, out, 1.0, part, share)  # out * 1 is exact: out + part * share

    elementwise_on_cores(add, [(out, *parts) for out, parts in pairs])
    return total


# Below this many elements an array's elementwise pass goes whole to one core (a piece of it would
# cost more to hand over than to compute).
PIECE_ELEMENTS = 32_768


def elementwise_on_cores(work, groups: list[tuple[np.ndarray, ...]]) -> None:
    """work(*arrays) for each group of flat arrays of one length (an elementwise pass: a parameter,
    its gradient and moments), each large group cut into one contiguous piece per core of the plan
    and every core given its pieces at once; small groups whole, one core each in turn. An element's
    result depends only on its own elements, so it is the same however the arrays are cut."""
    cores = cores_here()
    if cores < 2:
        for arrays in groups:
            work(*arrays)
        return
    parts = [[] for _ in range(cores)]
    whole = 0
    for arrays in groups:
        n = arrays[0].size
        if n < PIECE_ELEMENTS * cores:
            parts[whole % cores].append(arrays)
            whole += 1
            continue
        bounds = [n * k // cores // 16 * 16 for k in range(cores)] + [n]
        for k in range(cores):
            parts[k].append(tuple(a[bounds[k]:bounds[k + 1]] for a in arrays))
    on_cores(lambda part: [work(*arrays) for arrays in part], parts)


def whole_on_cores(work, items: list, size) -> None:
    """work(item) for every item, each whole on one core of the plan: the largest first, each to the
    core with the least work so far (size(item) of it); for passes that cannot be cut (a sum)."""
    cores = cores_here()
    if cores < 2:
        for item in items:
            work(item)
        return
    parts, loads = [[] for _ in range(cores)], [0] * cores
    for item in sorted(items, key=size, reverse=True):
        k = loads.index(min(loads))
        parts[k].append(item)
        loads[k] += size(item)
    on_cores(lambda part: [work(item) for item in part], parts)
