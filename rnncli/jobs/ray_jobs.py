"""Running a job's shards (rnncli/jobs/shards.py) on a Ray cluster: each shard a Ray task.

The model file goes once into Ray's object store; each worker process writes it to a local file
named by its digest and loads it once (shards.run_shard's cache). Ray runs a task again when its
worker dies (up to RETRIES times); a task that raises is resubmitted here, up to RETRIES times, and
then reported. Ray is imported only when a job asks for it (`rnncli[ray]`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable

from rnncli.errors import RnncliError, UsageError
from rnncli.jobs.shards import RETRIES, Part, Shard, Task, run_shard

CONNECT_TIMEOUT = 5.0  # seconds for a cluster's address to answer before ray.init is tried


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse an address HOST:PORT where nothing accepts a connection within `timeout` seconds (Ray's
    own client would wait there without end); "local", "auto" and ray:// addresses are Ray's to find."""
    import socket

    if address in ("local", "auto") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address}: give HOST:PORT (a cluster's address, as `ray start --head` prints it), "
                         "or local")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RnncliError(f"--ray {address}: nothing answers there within {timeout:.0f} s ({err.strerror or err}); "
                          "start a cluster with `ray start --head` or give its address") from None


INIT_TIMEOUT = 60.0  # seconds for a cluster to complete Ray's handshake (a local one to start: three times that)


def _connect(ray, timeout: float, **options) -> str | None:
    """ray.init(**options) -> None, or why it failed. Ray's client retries an address that accepts
    connections but is not a cluster inside native code, where neither Ctrl-C nor SIGTERM was seen
    for ~35 s; run in a thread while this one waits in short steps, Ctrl-C ends the command at once
    (exit 130), SIGTERM too (Ray sets its own handler only from the main thread), and a handshake
    that has not completed within `timeout` seconds fails."""
    import logging
    import threading
    import time

    outcome: dict = {}

    def connect() -> None:
        try:
            ray.init(**options)
            outcome["done"] = True
        except Exception as err:  # noqa: BLE001 - whatever Ray raises: cannot connect, refused, unauthenticated
            outcome["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__

    logging.getLogger("ray").setLevel(logging.ERROR)  # (its note that no SIGTERM handler is set from a thread)
    thread = threading.Thread(target=connect, name="rnncli-ray-init", daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    try:
        while thread.is_alive() and time.monotonic() < end:
            thread.join(0.2)  # back in Python five times a second: a signal is handled at once
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)  # Ray's thread can be neither stopped nor waited for at exit
    if thread.is_alive():
        return f"no answer within {timeout:.0f} s"
    return outcome.get("error")


def ray_runner(address: str, path: str | None):
    """Runs shards as Ray tasks on the cluster at `address`: yields (shard, part or None, error)."""
    check_reachable(address)
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'rnncli[ray]' (or pip install ray)") from None
    import numpy as np

    env = {k: os.environ[k] for k in ("RNNCLI_FAULTS",) if k in os.environ}
    local = {"_node_ip_address": "127.0.0.1", "include_dashboard": False} if address == "local" else {}
    err = _connect(ray, INIT_TIMEOUT * (3 if address == "local" else 1),
                   address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False,
                   logging_level="ERROR", configure_logging=False, runtime_env={"env_vars": env} if env else None,
                   **local)
    if err is not None:
        raise RnncliError(f"--ray {address}: cannot reach a Ray cluster ({err}); start one with `ray start --head` or "
                          "give its address (a cluster with token authentication, as `ray start` makes them, also "
                          "wants RAY_AUTH_MODE=token)")
    model = None
    if path is not None:
        with open(path, "rb") as f:
            data = f.read()
        model = (hashlib.sha256(data).hexdigest(), ray.put(np.frombuffer(data, np.uint8)))
    remote = ray.remote(max_retries=RETRIES)(_ray_shard)
    slots = max(2, int(2 * ray.cluster_resources().get("CPU", 2)))

    def runner(task: Task, shards: Iterable[Shard]):
        in_flight: dict = {}  # ref -> shard
        attempts: dict[int, int] = {}
        queue = iter(shards)
        exhausted = False

        def submit(shard: Shard) -> None:
            args = (task, shard, model[0], [model[1]]) if model else (task, shard, None, None)
            in_flight[remote.remote(*args)] = shard

        while True:
            while not exhausted and len(in_flight) < slots:
                shard = next(queue, None)
                if shard is None:
                    exhausted = True
                    break
                submit(shard)
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            shard = in_flight.pop(ready[0])
            try:
                part = ray.get(ready[0])
            except Exception as err:  # the task raised, or its worker died more often than Ray retries
                attempts[shard.index] = attempts.get(shard.index, 0) + 1
                if attempts[shard.index] < RETRIES:
                    submit(shard)
                    continue
                yield shard, None, _ray_error(err)
                continue
            yield shard, part, None

    return runner


def _ray_error(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    text = str(cause if cause is not None else err).strip().splitlines()
    return f"{type(cause or err).__name__}: {text[-1] if text else ''}"


def _ray_shard(task: Task, shard: Shard, digest: str | None, model_ref: list | None) -> Part:
    """A Ray task, given one core (Ray's default for a task; execution/plan.py): the model from the
    object store (written to a local file and loaded once per worker process), then the shard."""
    from rnncli.execution.plan import Plan, use

    use(Plan(1))
    path = None
    if digest is not None:
        import tempfile

        import ray

        path = os.path.join(tempfile.gettempdir(), f"rnncli-model-{digest[:16]}.npz")
        if not os.path.exists(path):
            data = ray.get(model_ref[0])
            from rnncli.formats.files import atomic_write

            atomic_write(path, lambda f: f.write(data.tobytes()), "model")
    return run_shard(task, shard, path)
