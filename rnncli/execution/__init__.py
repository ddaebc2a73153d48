"""How the work runs: the rows of a batch in shards, one per core (cores.py), compiling ahead at
install (precompile.py), the allocator's settings (allocator.py)."""
