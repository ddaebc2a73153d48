"""What the server's requests may say, checked field by field, and the shapes of its answers.

Requests follow OpenAI's completions API where one exists (`/v1/completions`: prompt, max_tokens,
temperature, top_p, n, seed, stop, stream, logprobs, echo; plus rnncli's top_k and until_eos);
rnncli's own endpoints take `input` (a text or a list of texts). A field of the wrong type or out
of range is a RequestError naming it; so is a field the server does not know (a misspelt option
would otherwise be ignored in silence) or one it cannot honour (penalties, logit_bias).
Errors are answered in OpenAI's form, {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnncli.config import SampleConfig


class RequestError(Exception):
    """A request the server refuses: its HTTP status, what is wrong, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}

    def body(self) -> dict:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                413: "request_too_large", 429: "rate_limit_error", 503: "unavailable", 504: "timeout"}
        return {"error": {"message": self.message, "type": kind.get(self.status, "server_error"),
                          "param": self.param, "code": self.status}}


@dataclass
class Limits:
    """What one request may ask for; what the server holds at once."""

    body_bytes: int = 8 << 20
    max_tokens: int = 4096
    n: int = 16
    texts: int = 10_000  # texts in one request (score, rescore, classify, tag, translate)
    rows: int = 64  # generating rows in flight per model (running or about to join)
    timeout: float = 600.0  # seconds a request may take
    logprobs: int = 20


def _field(body: dict, name: str, kinds, default=None, check=None, what: str = ""):
    """body[name] if present (None counts as absent), of one of `kinds`, passing `check`."""
    value = body.get(name)
    if value is None:
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        names = " or ".join({bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                             list: "a list", dict: "an object"}[k] for k in kinds)
        raise RequestError(400, f"`{name}` must be {names}, not {type(value).__name__}", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(400, f"`{name}` must be finite", name)
    if check is not None and not check(value):
        raise RequestError(400, f"`{name}` must be {what}, not {value!r}", name)
    return value


def _only(body: dict, known: set[str], ignored: set[str] = frozenset()) -> None:
    for name in body:
        if name not in known and name not in ignored:
            raise RequestError(400, f"unknown field `{name}` (this endpoint takes: {', '.join(sorted(known))})", name)


def texts_field(body: dict, limits: Limits, name: str = "input") -> list[str]:
    """`input`: a text or a list of texts, at most limits.texts."""
    value = body.get(name)
    if value is None:
        raise RequestError(400, f"`{name}` is required: a text or a list of texts", name)
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, f"`{name}` must be a string or a list of strings", name)
    if not texts:
        raise RequestError(400, f"`{name}` must not be an empty list", name)
    if len(texts) > limits.texts:
        raise RequestError(400, f"`{name}` holds {len(texts):,} texts; at most {limits.texts:,} per request", name)
    return texts


@dataclass
class Completion:
    """A checked `/v1/completions` request."""

    model: str | None
    prompts: list[str]
    config: SampleConfig  # length = max_tokens; num_samples = n
    stream: bool
    logprobs: int  # 0: none
    echo: bool
    include_usage: bool


COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop", "stream",
                     "logprobs", "echo", "until_eos", "stream_options", "user", "presence_penalty",
                     "frequency_penalty", "logit_bias", "best_of", "suffix"}


def parse_completion(body: dict, limits: Limits) -> Completion:
    _only(body, COMPLETION_FIELDS)
    model = _field(body, "model", str)
    prompt = body.get("prompt", "")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError(400, "`prompt` must be a string or a non-empty list of strings (token ids are not taken)",
                           "prompt")
    if len(prompts) > limits.n:
        raise RequestError(400, f"`prompt` holds {len(prompts)} prompts; at most {limits.n}", "prompt")
    max_tokens = _field(body, "max_tokens", int, 16, lambda v: 0 <= v <= limits.max_tokens,
                        f"from 0 to {limits.max_tokens}")
    temperature = _field(body, "temperature", float, 1.0, lambda v: v >= 0, "0 (greedy) or more")
    top_p = _field(body, "top_p", float, 1.0, lambda v: 0 < v <= 1, "in (0, 1]")
    top_k = _field(body, "top_k", int, 0, lambda v: v >= 0, "0 (all) or more")
    n = _field(body, "n", int, 1, lambda v: 1 <= v <= limits.n, f"from 1 to {limits.n}")
    if n * len(prompts) > limits.n:
        raise RequestError(400, f"`n` x prompts = {n * len(prompts)} choices; at most {limits.n}", "n")
    seed = _field(body, "seed", int, None, lambda v: 0 <= v < 2**63, "from 0 to 2**63 - 1")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)
                              or len(stops) > 4):
        raise RequestError(400, "`stop` must be a non-empty string or a list of up to 4 of them", "stop")
    stream = _field(body, "stream", bool, False)
    logprobs = _field(body, "logprobs", int, 0, lambda v: 0 <= v <= limits.logprobs, f"from 0 to {limits.logprobs}")
    echo = _field(body, "echo", bool, False)
    until_eos = _field(body, "until_eos", bool, False)
    options = _field(body, "stream_options", dict, {})
    include_usage = options.get("include_usage", False) is True
    _field(body, "user", str)
    for name in ("presence_penalty", "frequency_penalty"):
        if _field(body, name, float, 0.0) != 0.0:
            raise RequestError(400, f"`{name}` is not supported (rnncli samples the model's own distribution)", name)
    if _field(body, "logit_bias", dict, {}):
        raise RequestError(400, "`logit_bias` is not supported", "logit_bias")
    if _field(body, "best_of", int, 1) != 1:
        raise RequestError(400, "`best_of` is not supported: ask for `n` choices", "best_of")
    if _field(body, "suffix", str):
        raise RequestError(400, "`suffix` is not supported: a recurrent model continues text, it does not insert",
                           "suffix")
    config = SampleConfig(length=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, until_eos=until_eos,
                          stop=stops, num_samples=n, seed=seed)
    return Completion(model, prompts, config, stream, logprobs, echo, include_usage)


def parse_score(body: dict, limits: Limits) -> tuple[str | None, list[str], bool, bool]:
    """`/v1/score`: model, texts, eos (score ending each text), per_token."""
    _only(body, {"model", "input", "eos", "per_token"})
    return (_field(body, "model", str), texts_field(body, limits), _field(body, "eos", bool, True),
            _field(body, "per_token", bool, True))


RESCORE_RULES = {"kaldi": r"^(.*)-\d+$", "id": r"^(.*)$"}


def parse_rescore(body: dict, limits: Limits):
    """`/v1/rescore`: model, the n-best lines, and `rescore`'s options as a Rescore task."""
    from rnncli.inference.rescore import Rescore

    _only(body, {"model", "input", "weight", "best", "eos", "unk_cost", "ignore", "utterance"})
    ignore = _field(body, "ignore", list, [])
    if not all(isinstance(w, str) for w in ignore):
        raise RequestError(400, "`ignore` must be a list of strings", "ignore")
    rule = _field(body, "utterance", str, "kaldi", lambda v: v in RESCORE_RULES, " or ".join(RESCORE_RULES))
    task = Rescore(eos=_field(body, "eos", bool, True), weight=_field(body, "weight", float, 0.5,
                                                                       lambda v: 0 <= v <= 1, "in [0, 1]"),
                   best=_field(body, "best", bool, False), as_json=True,
                   unk_cost=_field(body, "unk_cost", float, 0.0, lambda v: v >= 0, "0 or more"), ignore=ignore,
                   utterance=RESCORE_RULES[rule])
    lines = [line for text in texts_field(body, limits) for line in text.removesuffix("\n").split("\n")]
    if len(lines) > limits.texts:
        raise RequestError(400, f"`input` holds {len(lines):,} lines; at most {limits.texts:,} per request", "input")
    return _field(body, "model", str), lines, task


def model_field(body: dict) -> str | None:
    """The model a request names, if it names one."""
    return _field(body, "model", str)


def parse_task(body: dict, limits: Limits, task) -> tuple[list[str], SampleConfig]:
    """`/v1/classify`, `/v1/tag`, `/v1/translate`: texts (and, for a task that decodes, how)."""
    _only(body, {"model", "input"} | ({"beam", "max_tokens", "temperature", "seed"} if task.decodes else set()))
    config = SampleConfig(length=200, temperature=0.0)
    if task.decodes:
        config = SampleConfig(length=_field(body, "max_tokens", int, 200, lambda v: 1 <= v <= limits.max_tokens,
                                            f"from 1 to {limits.max_tokens}"),
                              temperature=_field(body, "temperature", float, 0.0, lambda v: v >= 0, "0 or more"),
                              beam=_field(body, "beam", int, 0, lambda v: 0 <= v <= 64, "from 0 to 64"),
                              seed=_field(body, "seed", int, None, lambda v: 0 <= v < 2**63, "from 0 to 2**63 - 1"))
    return texts_field(body, limits), config
