"""How the work runs, the engine's seam: the cores a process may use (plan.py), a batch's rows in
shards, one per core (cores.py), many rows' single steps (steps.py), compiling ahead at install
(precompile.py), the allocator's settings (allocator.py)."""
