"""Jobs in shards: here, on N processes (shards.py) or on Ray (ray_jobs.py); parts, manifests, resume."""
