"""`rnncli serve`: models behind HTTP; the work is in rnncli/serve/."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rnncli.cli.common import app, model_path, user_errors

LIMITS = "Limits"


@app.command()
@user_errors
def serve(
    model: Annotated[list[str] | None, typer.Option(help="Checkpoint to serve (repeat for several; default: "
                                                         "$RNNCLI_MODEL, else the last trained). Requests name a "
                                                         "model by its file name without .npz.",
                                                    show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (another than loopback prints a warning).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    api_key: Annotated[str | None, typer.Option(help="Require `Authorization: Bearer KEY` (default: "
                                                     "$RNNCLI_API_KEY; none).", show_default=False)] = None,
    parallel: Annotated[int, typer.Option(help="Generating rows a model holds at once (its batch); a request "
                                               "beyond gets 429 and Retry-After.", rich_help_panel=LIMITS)] = 64,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one completion may ask for.",
                                            rich_help_panel=LIMITS)] = 4096,
    max_n: Annotated[int, typer.Option(help="Most choices (n x prompts) one completion may ask for.",
                                       rich_help_panel=LIMITS)] = 16,
    max_body: Annotated[int, typer.Option(help="Largest request body, in bytes (413 beyond).",
                                          rich_help_panel=LIMITS)] = 8 << 20,
    max_texts: Annotated[int, typer.Option(help="Most texts one scoring, rescoring or task request may hold.",
                                           rich_help_panel=LIMITS)] = 10_000,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take (504 beyond).",
                                           rich_help_panel=LIMITS)] = 600.0,
    shutdown_timeout: Annotated[float, typer.Option(help="On SIGTERM or Ctrl-C: seconds to finish the requests "
                                                         "in flight (no new ones are taken).",
                                                    rich_help_panel=LIMITS)] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (no access log).")] = False,
) -> None:
    """Serve models over HTTP: OpenAI-compatible completions (streamed, continuous batching), scoring,
    rescoring, and task models' answers.

    Example: rnncli serve --model runs/demo.npz --port 8080
    then: curl -s localhost:8080/v1/completions -d '{"prompt": "The ", "max_tokens": 40}'
    """
    import importlib.util

    from rnncli.errors import UsageError

    if not all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn")):
        raise UsageError("rnncli serve needs its HTTP stack: pip install 'rnncli[serve]'")
    from rnncli.serve.app import Server, check_host
    from rnncli.serve.protocol import Limits

    for name, value, least in (("--parallel", parallel, 1), ("--max-tokens", max_tokens, 1), ("--max-n", max_n, 1),
                               ("--max-body", max_body, 1024), ("--max-texts", max_texts, 1), ("--port", port, 0)):
        if value < least:
            raise UsageError(f"{name} must be at least {least}, not {value}")
    if not 0 < timeout < float("inf"):
        raise UsageError(f"--timeout must be a number of seconds above 0, not {timeout}")
    if not 0 <= shutdown_timeout < float("inf"):
        raise UsageError(f"--shutdown-timeout must be a number of seconds, 0 or more, not {shutdown_timeout}")
    if port > 65535:
        raise UsageError(f"--port must be at most 65535, not {port}")
    paths = [model_path(m) for m in (model or [None])]
    if not all(paths):
        raise UsageError("no model given and none trained here yet: run `rnncli train CORPUS` first, "
                         "or pass --model PATH (or set RNNCLI_MODEL)")
    names = [os.path.basename(p).removesuffix(".npz") for p in paths]
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such checkpoint")
    if len(set(names)) < len(names):
        raise UsageError(f"two models share a name ({', '.join(names)}): requests tell them apart by file name")
    key = api_key if api_key is not None else os.environ.get("RNNCLI_API_KEY") or None
    warning = check_host(host)
    if warning and not key:
        sys.stderr.write(warning + "\n")
    limits = Limits(body_bytes=max_body, max_tokens=max_tokens, n=max_n, texts=max_texts, rows=parallel,
                    timeout=timeout)
    server = Server(paths, limits, key)
    run_server(server, host, port, shutdown_timeout, quiet)
    if server.failed:
        raise UsageError(server.failed)


def http_server(server, host: str, port: int, shutdown_timeout: float, quiet: bool):
    """A uvicorn server for `server`'s app: once it listens (and /health answers 503) the models load
    on a thread; on SIGTERM or Ctrl-C it takes no new requests, finishes those in flight within
    `shutdown_timeout`, then stops the batchers."""
    import contextlib
    import threading

    import uvicorn

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threading.Thread(target=server.load, name="rnncli-load", daemon=True).start()
        yield
        server.close()

    web = server.app()
    web.router.lifespan_context = lifespan
    config = uvicorn.Config(web, host=host, port=port, log_level="warning" if quiet else "info",
                            access_log=not quiet, timeout_graceful_shutdown=shutdown_timeout, lifespan="on")
    http = uvicorn.Server(config)

    def failed(message: str) -> None:
        http.should_exit = True

    server.on_failure = failed
    return http


def run_server(server, host: str, port: int, shutdown_timeout: float, quiet: bool) -> None:
    http = http_server(server, host, port, shutdown_timeout, quiet)
    if not quiet:
        sys.stderr.write(f"serving {', '.join(server.paths)} on http://{host}:{port} (loading; /health says when "
                         f"ready)\n")
    http.run()
