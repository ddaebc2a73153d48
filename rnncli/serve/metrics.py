"""The figures `GET /metrics` shows, in Prometheus's text format (version 0.0.4): requests by
endpoint and status, tokens generated and scored, rows in the batch, what waits, and latency
histograms (a request's whole time; a stream's time to its first token and per token)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{braces} {self.total}", f"{name}_count{braces} {self.n}"]


class Metrics:
    """Counters and histograms, updated from the event loop; the batchers' own counts read live."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.first_token = Histogram()
        self.per_token = Histogram()

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency[endpoint].observe(seconds)

    def stream(self, first_token: float | None, per_token: float | None) -> None:
        with self._lock:
            if first_token is not None:
                self.first_token.observe(first_token)
            if per_token is not None:
                self.per_token.observe(per_token)

    def text(self, batchers: dict) -> str:
        lines = ["# HELP rnncli_requests_total Requests answered, by endpoint and HTTP status.",
                 "# TYPE rnncli_requests_total counter"]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'rnncli_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            per_model = [("rnncli_tokens_generated_total", "counter", "Tokens generated.", "generated"),
                         ("rnncli_tokens_scored_total", "counter", "Tokens scored.", "scored"),
                         ("rnncli_batch_rows", "gauge", "Generating rows in the batch now.", "rows_running"),
                         ("rnncli_queue_depth", "gauge", "Rows, sentences and calls waiting for the batch.",
                          "queued")]
            for name, kind, help_text, attr in per_model:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                lines += [f'{name}{{model="{m}"}} {getattr(b, attr)}' for m, b in batchers.items()]
            lines += ["# HELP rnncli_request_seconds Time to answer a request (a stream: to its end).",
                      "# TYPE rnncli_request_seconds histogram"]
            for endpoint, h in sorted(self.latency.items()):
                lines += h.lines("rnncli_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP rnncli_time_to_first_token_seconds A completion's time to its first token.",
                      "# TYPE rnncli_time_to_first_token_seconds histogram", *self.first_token.lines(
                          "rnncli_time_to_first_token_seconds", ""),
                      "# HELP rnncli_time_per_token_seconds A completion's time per token after the first.",
                      "# TYPE rnncli_time_per_token_seconds histogram", *self.per_token.lines(
                          "rnncli_time_per_token_seconds", "")]
        return "\n".join(lines) + "\n"
