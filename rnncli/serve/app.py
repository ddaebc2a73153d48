"""`rnncli serve`'s HTTP side: an ASGI app (Starlette) over the batchers (batcher.py); a
completion's answer, whole or streamed, is completion.py's.

Endpoints:
    GET  /health           503 while the models load, then 200
    GET  /v1/models        each model: task, cell, sizes, vocabulary, training corpus, validation loss
    POST /v1/completions   OpenAI's completions (streamed as server-sent events with "stream")
    POST /v1/score         texts -> per-token log-probabilities, total, perplexity, <UNK> count
    POST /v1/rescore       n-best lines -> costs (rescore --json's records)
    POST /v1/classify, /v1/tag, /v1/translate   a task model's answers (the commands' --json records)
    GET  /metrics          Prometheus text

Every model's work runs on its batcher's threads (batcher.py: a lane per core and one that feeds
prompts, scores and runs calls); the event loop only parses, waits and writes. No
request names a file: the models are the ones the command line loaded.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from rnncli.serve.batcher import Batcher, Row, Update
from rnncli.serve.completion import Choice, CompletionAnswer, EventStream
from rnncli.serve.metrics import Metrics
from rnncli.serve.protocol import (
    Limits,
    RequestError,
    model_field,
    parse_completion,
    parse_rescore,
    parse_score,
    parse_task,
)


@dataclass
class Served:
    """One loaded model, as requests name it (its file's name without .npz)."""

    name: str
    path: str
    ck: object
    batcher: Batcher
    created: int

    @property
    def task(self):
        from rnncli.tasks import get_task

        return get_task(self.ck.model.task)


def model_name(path: str) -> str:
    base = os.path.basename(path)
    return base[:-4] if base.endswith(".npz") else base


class Server:
    """The models (loaded on a thread once the port is open: /health says 503 until then), the
    limits, the key, and the figures."""

    def __init__(self, paths: list[str], limits: Limits, api_key: str | None = None):
        self.paths, self.limits, self.api_key = paths, limits, api_key
        self.models: dict[str, Served] = {}
        self.ready = False
        self.failed: str | None = None
        self.metrics = Metrics()
        self.on_failure = lambda message: None

    # ---- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        from rnncli.errors import RnncliError
        from rnncli.tasks import get_task, load_model_checkpoint

        try:
            for path in self.paths:
                ck = load_model_checkpoint(path, training_state=False)
                name = model_name(path)
                batcher = Batcher(ck, name)
                self.models[name] = Served(name, path, ck, batcher, int(os.path.getmtime(path)))
                if "completions" in get_task(ck.model.task).endpoints:
                    _warm_up(batcher, ck)
            self.ready = True
        except (RnncliError, OSError) as err:
            self.failed = f"{err}"
            self.on_failure(self.failed)

    def close(self) -> None:
        for served in self.models.values():
            served.batcher.stop()

    def model_for(self, name: str | None, endpoint: str) -> Served:
        """The model a request names, else the first one loaded whose task answers the endpoint."""
        from rnncli.tasks import TASKS

        wanted = next(t for t in TASKS.values() if endpoint in t.endpoints)
        if name is not None:
            served = self.models.get(name)
            if served is None:
                raise RequestError(404, f"no model `{name}` here (loaded: {', '.join(self.models)})", "model")
            if endpoint not in served.task.endpoints:
                raise RequestError(400, f"`{name}` is {served.task.what}; /v1/{endpoint} needs {wanted.what}",
                                   "model")
            return served
        for served in self.models.values():
            if endpoint in served.task.endpoints:
                return served
        raise RequestError(404, f"/v1/{endpoint} needs {wanted.what}, and none is loaded here", "model")

    # ---- the app --------------------------------------------------------------------------------

    def app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        from rnncli.tasks import TASKS

        routes = [Route("/health", self.health, methods=["GET"]),
                  Route("/metrics", self.handler("metrics", self.show_metrics), methods=["GET"]),
                  Route("/v1/models", self.handler("models", self.list_models), methods=["GET"]),
                  Route("/v1/completions", self.handler("completions", self.completions), methods=["POST"]),
                  Route("/v1/score", self.handler("score", self.score), methods=["POST"]),
                  Route("/v1/rescore", self.handler("rescore", self.rescore), methods=["POST"])]
        routes += [Route(f"/v1/{endpoint}", self.handler(endpoint, self.task_answer(endpoint)), methods=["POST"])
                   for t in TASKS.values() if not t.stream for endpoint in t.endpoints]  # the task models' own
        return Starlette(routes=routes)

    def handler(self, endpoint: str, fn):
        """fn(request) behind the key, the loading gate and the timeout, its errors as JSON, counted."""
        from starlette.responses import JSONResponse

        async def handle(request):
            start = time.perf_counter()
            try:
                self._check_key(request)
                if not self.ready:
                    raise RequestError(503, "the models are still loading", headers={"Retry-After": "1"})
                response = await asyncio.wait_for(fn(request), self.limits.timeout)
            except RequestError as err:
                response = JSONResponse(err.body(), err.status, headers=err.headers)
            except TimeoutError:
                err = RequestError(504, f"the request took longer than {self.limits.timeout:g} s (--timeout)")
                response = JSONResponse(err.body(), 504)
            if isinstance(response, EventStream):
                response.on_end = lambda: self.metrics.request(endpoint, 200, time.perf_counter() - start)
            else:
                self.metrics.request(endpoint, response.status_code, time.perf_counter() - start)
            return response

        return handle

    def _check_key(self, request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise RequestError(401, "a valid API key is required: `Authorization: Bearer KEY`",
                               headers={"WWW-Authenticate": "Bearer"})

    async def body(self, request) -> dict:
        """The request's JSON object, read up to the body limit (413 beyond it)."""
        limit = self.limits.body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body is {int(declared):,} bytes; at most {limit:,} (--max-body)")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise RequestError(413, f"the body is over {limit:,} bytes (--max-body)")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"the body must be a JSON object, not {type(body).__name__}")
        return body

    # ---- endpoints ------------------------------------------------------------------------------

    async def health(self, request):
        from starlette.responses import JSONResponse

        if self.failed:
            return JSONResponse({"status": "error", "error": self.failed}, 503)
        if not self.ready:
            return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ok", "models": list(self.models)})

    async def show_metrics(self, request):
        from starlette.responses import PlainTextResponse

        text = self.metrics.text({name: s.batcher for name, s in self.models.items()})
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def list_models(self, request):
        from starlette.responses import JSONResponse

        from rnncli.formats.checkpoint import describe

        data = []
        for s in self.models.values():
            d = {k: v for k, v in describe(s.ck, s.path).items() if k not in ("history", "checkpoint")}
            data.append({"id": s.name, "object": "model", "created": s.created, "owned_by": "rnncli", **d})
        return JSONResponse({"object": "list", "data": data})

    async def completions(self, request):
        from starlette.responses import JSONResponse

        from rnncli.inference.sample import encode_prime

        req = parse_completion(await self.body(request), self.limits)
        served = self.model_for(req.model, "completions")
        batcher, tokenizer = served.batcher, served.ck.tokenizer
        n = req.config.num_samples
        wanted = n * len(req.prompts)
        if wanted > self.limits.rows:
            raise RequestError(400, f"{wanted} choices (n x prompts) are more than the batch holds "
                                    f"({self.limits.rows} rows, --parallel)", "n")
        if batcher.rows_in_flight + wanted > self.limits.rows:
            raise RequestError(429, f"the batch is full ({self.limits.rows} rows, --parallel); try again shortly",
                               headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        choices: list[Choice] = []
        for p, prompt in enumerate(req.prompts):
            prime_ids, _ = encode_prime(tokenizer, prompt)
            for i, rng in enumerate(_streams(req.config.seed, n)):
                choice = Choice(p * n + i, prompt, prime_ids, asyncio.Queue())
                send = _sender(loop, choice.queue)
                choice.row = Row(tokenizer, prime_ids, req.config, rng, send, req.logprobs)
                choices.append(choice)
        echoes = None
        if req.echo:
            echoes = asyncio.ensure_future(self._scored(batcher, [c.prime_ids for c in choices[::n]]))
        batcher.add_rows([c.row for c in choices])
        answer = CompletionAnswer(served, req, choices, echoes, self.metrics)
        if req.stream:
            return EventStream(answer.events(), on_close=answer.cancel)
        try:
            return JSONResponse(await answer.whole())
        finally:
            answer.cancel()

    async def _scored(self, batcher: Batcher, ids: list[np.ndarray]) -> list[np.ndarray]:
        """Per-token log-probabilities of each id sequence, scored in the batcher's queue."""
        if not any(len(s) for s in ids):
            return [np.zeros(0) for _ in ids]
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batcher.score(ids, _settler(loop, future))
        return await future

    async def _on_batcher(self, batcher: Batcher, fn):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batcher.call(fn, _settler(loop, future))
        return await future

    async def score(self, request):
        from starlette.responses import JSONResponse

        from rnncli.inference.score import SentenceScore, sentence_ids, sentence_record

        model, texts, eos, per_token = parse_score(await self.body(request), self.limits)
        served = self.model_for(model, "score")
        ids = [sentence_ids(served.ck.tokenizer, t, eos) for t in texts]
        for i, (text, s) in enumerate(zip(texts, ids, strict=True)):
            if len(s) == 0 or (eos and len(s) == 1 and not text.strip()):
                raise RequestError(400, f"`input[{i}]` is empty: nothing to score", f"input[{i}]")
        lps = await self._scored(served.batcher, ids)
        data = []
        for i, (t, s, lp) in enumerate(zip(texts, ids, lps, strict=True)):
            record = sentence_record(served.ck, SentenceScore(t, s.tolist(), lp.tolist()), per_token)
            data.append({"index": i, **record})
        usage = {"prompt_tokens": sum(len(s) for s in ids), "total_tokens": sum(len(s) for s in ids)}
        return JSONResponse({"object": "list", "model": served.name, "data": data, "usage": usage})

    async def rescore(self, request):
        from starlette.responses import JSONResponse

        from rnncli.jobs.shards import Shard

        model, lines, task = parse_rescore(await self.body(request), self.limits)
        served = self.model_for(model, "rescore")
        part = await self._on_batcher(served.batcher, lambda: task.run(served.ck, Shard(0, 1, lines)))
        data = [json.loads(line) if line else None for line in part.text.split("\n")[:-1]]
        return JSONResponse({"object": "list", "model": served.name, "data": data,
                             "bad_lines": [{"line": number, "why": why} for number, why in part.bad]})

    def task_answer(self, endpoint: str):
        async def answer(request):
            from starlette.responses import JSONResponse

            body = await self.body(request)
            served = self.model_for(model_field(body), endpoint)
            texts, config = parse_task(body, self.limits, served.task)
            data = await self._on_batcher(served.batcher, lambda: list(served.task.answers(served.ck, texts, config)))
            return JSONResponse({"object": "list", "model": served.name, "data": data})

        return answer


def _streams(seed: int | None, n: int) -> list[np.random.Generator]:
    """The random streams of n choices, as `rnncli sample` draws them: one sample from the seed's own
    stream, several each from its child of the seed's sequence (sample_group)."""
    from rnncli.inference.sample import sample_entropy

    if n == 1:
        return [np.random.default_rng(seed)]
    entropy = sample_entropy(seed)
    return [np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(i,))) for i in range(n)]


def _sender(loop, queue: asyncio.Queue):
    def send(update: Update) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, update)
        except RuntimeError:  # the loop has closed: nobody is waiting
            pass

    return send


def _settler(loop, future: asyncio.Future):
    def settle(result, error) -> None:
        def set_it():
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(set_it)
        except RuntimeError:
            pass

    return settle


def _warm_up(batcher: Batcher, ck) -> None:
    """One token generated, so that the first request does not load the kernels."""
    from rnncli.config import SampleConfig

    done = threading.Event()
    row = Row(ck.tokenizer, np.zeros(0, np.int64), SampleConfig(length=1), np.random.default_rng(0),
              lambda update: update.finish_reason and done.set())
    batcher.add_rows([row])
    done.wait(600)


def check_host(host: str) -> str | None:
    """A warning when the server listens beyond this machine."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine can use the models"
            + ("" if os.environ.get("RNNCLI_API_KEY") else " (set --api-key or RNNCLI_API_KEY to require a key)"))

