"""Training: a request checked and turned into a run (request.py), the loop (train.py), the
optimizers (optim.py), the learning-rate schedule (schedule.py), a run's files (runfiles.py)."""
