"""The Numba engine: recurrent cells, embedding and output layers.

Naming: the notes' activation `a<t>` is `h` here and their memory cell `c<t>` is `c`. Dimension
letters, used in every shape comment: B batch, T time steps, D layer input size, H hidden size,
G gates (packed side by side along the last axis, so a weight is (·, G*H)), V vocabulary.

Arrays are time-major, (T, B, ·). Each cell family has one module with, side by side:
  - a Numba kernel for the recurrence of `forward` over a chunk (one (B, H) @ (H, G*H) product per
    step, the gate maths fused in one loop), keeping exactly what backward needs;
  - the matching `backward` kernel (BPTT over the chunk, one product per step against a
    contiguous transposed copy of the recurrent weights);
  - a `step` for generation that stores nothing.
The input projections of all T steps and the weight gradients are single large products done in
`recurrent.py`, shared by every cell.

Importing this package compiles nothing: kernels compile on first call (and are cached on disk).
"""
