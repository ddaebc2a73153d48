"""A completion's answer (`/v1/completions`): its choices' updates from the batcher gathered into
OpenAI's answer, whole or as server-sent events (a stop string's possible start held back, echo
with the prompt's log-probabilities first, `data: [DONE]` at the end), and the response that
streams them and frees the rows when the client leaves."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rnncli.serve.batcher import Row, Update
from rnncli.serve.metrics import Metrics
from rnncli.serve.protocol import RequestError

if TYPE_CHECKING:
    from rnncli.serve.app import Served


@dataclass
class Choice:
    """One choice of a completion as its updates arrive."""

    index: int
    prompt: str
    prime_ids: np.ndarray
    queue: asyncio.Queue
    row: Row | None = None
    text: str = ""  # generated so far (stop strings included: cut when sent)
    sent: int = 0  # characters of `text` sent (streaming)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list = field(default_factory=list)
    finish_reason: str | None = None


class CompletionAnswer:
    """A completion request's choices, answered whole or as a stream of server-sent events."""

    def __init__(self, served: Served, req, choices: list[Choice], echoes, metrics: Metrics):
        self.served, self.req, self.choices, self.echoes, self.metrics = served, req, choices, echoes, metrics
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.stops = list(req.config.stop or [])
        self.hold = max((len(s) for s in self.stops), default=1) - 1  # a stop string's start may be pending
        self.start = time.perf_counter()

    def cancel(self) -> None:
        for c in self.choices:
            c.row.cancel()

    async def _next(self, c: Choice) -> Update:
        update = await c.queue.get()
        c.text += update.text
        c.tokens += update.tokens
        c.logprobs += update.logprobs
        c.top += update.top
        if update.finish_reason is not None:
            if update.finish_reason.startswith("error"):
                raise RequestError(500, f"generation failed: {update.finish_reason[7:]}")
            c.finish_reason = update.finish_reason
        return update

    def _final_text(self, c: Choice) -> str:
        """The generated text, a stop string it ended on left out (as OpenAI's API does)."""
        if c.finish_reason == "stop":
            for s in self.stops:
                if c.text.endswith(s):
                    return c.text[: -len(s)]
        return c.text

    async def _echo(self) -> list[np.ndarray] | None:
        return None if self.echoes is None else await self.echoes

    def _logprobs(self, c: Choice, tokens: list[int], logprobs: list[float], top: list, offset: int,
                  context: list[int], prompt: np.ndarray | None = None, prompt_lps=None) -> dict | None:
        """OpenAI's logprobs object for some tokens (the prompt's first, with echo): each token's text,
        log-probability, likeliest alternatives (generated tokens only) and character offset."""
        if not self.req.logprobs and prompt is None:
            return None
        tokenizer = self.served.ck.tokenizer
        ids = ([] if prompt is None else prompt.tolist()) + tokens
        lps = ([] if prompt_lps is None else prompt_lps.tolist()) + logprobs
        tops = ([None] * (len(ids) - len(tokens))) + [
            {tokenizer.token_texts([t])[0]: lp for t, lp in alts} for alts in top] if self.req.logprobs else None
        from rnncli.inference.sample import continuation_text

        offsets = []
        for t in ids:
            offsets.append(offset)
            offset += len(continuation_text(tokenizer, context, [t]))
            context = (context + [t])[-8:]
        return {"tokens": tokenizer.token_texts(ids), "token_logprobs": lps,
                "top_logprobs": tops if tops is not None else [None] * len(ids), "text_offset": offsets}

    def _usage(self) -> dict:
        prompt = sum(len(c.prime_ids) for c in self.choices[:: self.req.config.num_samples])
        generated = sum(len(c.tokens) for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}

    async def whole(self) -> dict:
        for c in self.choices:
            while c.finish_reason is None:
                await self._next(c)
        echoes = await self._echo()
        out = []
        for c in self.choices:
            text = self._final_text(c)
            prompt = c.prompt if self.req.echo else ""
            logprobs = None
            if self.req.logprobs or self.req.echo:
                p = c.index // self.req.config.num_samples
                prompt_ids = c.prime_ids if self.req.echo else None
                logprobs = self._logprobs(c, c.tokens, c.logprobs, c.top, 0, [1] if self.req.echo else
                                          [1, *c.prime_ids.tolist()][-8:], prompt_ids,
                                          echoes[p] if echoes else None)
                if not self.req.logprobs and logprobs is not None:  # echo alone: the prompt's figures
                    logprobs["top_logprobs"] = [None] * len(logprobs["tokens"])
            out.append({"index": c.index, "text": prompt + text, "logprobs": logprobs,
                        "finish_reason": c.finish_reason})
        self._observe()
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.served.name,
                "choices": out, "usage": self._usage()}

    def _observe(self) -> None:
        first = [c for c in self.choices if c.tokens]
        if first:
            elapsed = time.perf_counter() - self.start
            tokens = sum(len(c.tokens) for c in self.choices)
            self.metrics.stream(None, elapsed / max(tokens, 1))

    def _chunk(self, index: int, text: str, logprobs, finish_reason) -> bytes:
        chunk = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.served.name,
                 "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]}
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    async def events(self):
        """Server-sent events: with echo each prompt first; then each choice's text as its bursts
        arrive (a stop string's possible start held back until decided), its last event with its
        finish reason; `data: [DONE]` at the end."""
        if self.req.echo:
            echoes = await self._echo()
            for c in self.choices:
                p = c.index // self.req.config.num_samples
                logprobs = self._logprobs(c, [], [], [], 0, [1], c.prime_ids, echoes[p])
                yield self._chunk(c.index, c.prompt, logprobs, None)
        pending = {asyncio.ensure_future(self._next(c)): c for c in self.choices}
        try:
            async for chunk in self._generated(pending):
                yield chunk
        finally:  # the client left, or a choice failed: nobody waits for the others
            for task in pending:
                task.cancel()

    async def _generated(self, pending: dict):
        """The choices' events as their updates arrive (`events`), then the usage and [DONE]."""
        first_token = None
        tokens_sent = 0
        events: list[bytes] = []
        while pending:
            if len(pending) == 1:  # one choice (most requests): its update, without a wait over many
                done = list(pending)
                await done[0]
            else:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                c = pending.pop(task)
                update = task.result()
                if c.finish_reason is None:
                    pending[asyncio.ensure_future(self._next(c))] = c
                    text = c.text[c.sent: max(c.sent, len(c.text) - self.hold)]
                else:
                    text = self._final_text(c)[c.sent:]
                c.sent += len(text)
                if update.tokens and first_token is None:
                    first_token = time.perf_counter() - self.start
                tokens_sent += len(update.tokens)
                logprobs = None
                if self.req.logprobs:
                    base = len(c.prompt) if self.req.echo else 0
                    context = [1, *c.prime_ids.tolist(), *c.tokens[: len(c.tokens) - len(update.tokens)]][-8:]
                    logprobs = self._logprobs(c, update.tokens, update.logprobs, update.top,
                                              base + len(c.text) - len(update.text), context)
                if text or logprobs or c.finish_reason:
                    events.append(self._chunk(c.index, text, logprobs, c.finish_reason))
            if pending and events:  # what arrived together, in one write (the last with the end, below)
                yield b"".join(events)
                events = []
        if self.req.include_usage:
            chunk = {"id": self.id, "object": "text_completion", "created": self.created,
                     "model": self.served.name, "choices": [], "usage": self._usage()}
            events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        yield b"".join([*events, b"data: [DONE]\n\n"])
        elapsed = time.perf_counter() - self.start
        per_token = (elapsed - first_token) / (tokens_sent - 1) if first_token and tokens_sent > 1 else None
        self.metrics.stream(first_token, per_token)


class EventStream:
    """A response of server-sent events from an async iterator of chunks; when it ends, fails or
    the client leaves (noticed at once, or at the next write), `on_close` frees what it held."""

    def __init__(self, events, on_close):
        self.events, self.on_close = events, on_close
        self.on_end = lambda: None
        self.status_code = 200

    async def __call__(self, scope, receive, send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                    (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming, watching = asyncio.ensure_future(stream()), asyncio.ensure_future(client_left())
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in (streaming, watching):
                job.cancel()
            self.on_close()
            self.on_end()
        if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
            err = streaming.exception()
            if not isinstance(err, OSError):
                sys.stderr.write(f"error: a stream failed: {err}\n")
