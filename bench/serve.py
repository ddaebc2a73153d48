"""`rnncli serve` under load, against the command line on the same machine, in one run.

The char-rnn lstm (2 x 512, embedding 64, trained a few steps on tiny-shakespeare: speed does not
depend on the weights) is served by `rnncli serve` in its own process; the clients run in others.

- Generation: 1, 8, 32 and 64 concurrent streaming clients (httpx, or with --client lean a bare
  HTTP/1.1 connection on asyncio's streams; up to 32 on the event loop of one client process:
  CLIENTS_PER_PROCESS), each asking for --tokens tokens again and again for
  --seconds: aggregate generated tokens/s, and p50/p99 of the
  time to the first token and of the time per token (the gap between a stream's events over the
  tokens they carry). Beside it, `sample -n 32`'s own rate: 32 samples side by side in-process
  (sample_group, warm), what the server's batch of 32 rows is held against; the two are measured
  in turn (--repeats loads of 32 clients between --repeats + 1 of sample), medians of each.
- Scoring: 10,000 lines of the corpus sent to /v1/score by 16 concurrent clients in requests of
  --score-chunk lines, against `score`'s own scoring of the same lines in-process (score_sentences,
  warm) and the whole `rnncli score --file` command.

    python bench/serve.py [--seconds 8] [--tokens 256] [--client httpx|lean]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, write_results

CORPORA = [ROOT / "corpora" / "downloads" / "tinyshakespeare.txt", ROOT.parent / "shared" / "corpora" /
           "tinyshakespeare.txt"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


CLIENTS_PER_PROCESS = 32  # one client process's event loop (httpx) keeps up with this many streams;
# 64 streams in one process fell behind the server (12.7k tokens/s at 0.44 of a core, against 20.0k
# from two processes of 32 each), so the clients run in ceil(clients / 32) processes, started together.


class LeanConnection:
    """One HTTP/1.1 keep-alive connection on asyncio's streams, reading a streamed response's chunked
    body line by line: about the least a streaming client can do (no HTTP library), so that the
    clients' own Python takes as little as it can of the two cores they share with the server
    (`--client lean`; httpx, what users have, is the default)."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def lines(self, path: str, body: dict):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(data), data))
        status = await self.reader.readline()
        assert b" 200 " in status, status
        headers = {}
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        assert headers.get("transfer-encoding") == "chunked", headers
        pending = b""
        while size := int((await self.reader.readline()).strip(), 16):
            pending += (await self.reader.readexactly(size + 2))[:-2]
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode()
        await self.reader.readline()  # the empty last chunk's line end

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def clients_of_one_process(url: str, clients: int, first_seed: int, start_at: float, seconds: float,
                                 tokens: int, kind: str = "httpx") -> dict:
    """`clients` streaming clients on one event loop from wall time `start_at` for `seconds`: the
    tokens they received in that time, and each stream's time to its first token and per token.
    `kind`: httpx's AsyncClient, or a LeanConnection per client."""
    first_tokens, per_token = [], []
    generated = 0
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds

    async def client(lines, k: int) -> None:
        nonlocal generated
        seed = 1000 * k
        while time.perf_counter() < deadline:
            seed += 1
            body = {"prompt": "ROMEO:", "max_tokens": tokens, "temperature": 0.8, "seed": seed, "stream": True,
                    "logprobs": 0}
            start = last = time.perf_counter()
            first = True
            async for line in lines("/v1/completions", body):
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter()
                chunk = json.loads(line[6:])
                text = chunk["choices"][0]["text"]
                n = len(text)  # a char model: one token per character (a stop string is never held back here)
                if n == 0:
                    continue
                if first:
                    first_tokens.append(now - start)
                    first = False
                else:
                    per_token.extend([(now - last) / n] * n)
                last = now
                if now < deadline:
                    generated += n

    if kind == "lean":
        connections = [LeanConnection(url) for _ in range(clients)]
        await asyncio.gather(*(client(c.lines, first_seed + k) for k, c in enumerate(connections)))
        for c in connections:
            await c.close()
    else:
        import httpx

        limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:

            async def lines(path: str, body: dict):
                async with http.stream("POST", url + path, json=body) as response:
                    assert response.status_code == 200, response.status_code
                    async for line in response.aiter_lines():
                        yield line

            await asyncio.gather(*(client(lines, first_seed + k) for k in range(clients)))
    return {"generated": generated, "first_tokens": first_tokens, "per_token": per_token}


def generation_load(url: str, clients: int, seconds: float, tokens: int, kind: str = "httpx") -> dict:
    """`clients` streaming clients in as many processes as they need, for `seconds`: aggregate
    tokens/s and the p50/p99 of the time to the first token and per token."""
    processes = -(-clients // CLIENTS_PER_PROCESS)
    start_at = time.time() + 1.5  # every process started and its client made before the load begins
    running = []
    for p in range(processes):
        share = clients // processes + (p < clients % processes)
        running.append(subprocess.Popen([sys.executable, __file__, "--clients-of", url, str(share),
                                          str(p * CLIENTS_PER_PROCESS), str(start_at), str(seconds), str(tokens), kind],
                                         stdout=subprocess.PIPE, text=True))
    parts = []
    for process in running:
        out, _ = process.communicate(timeout=seconds + 300)
        assert process.returncode == 0, "a client process failed"
        parts.append(json.loads(out))
    first_tokens = [t for part in parts for t in part["first_tokens"]]
    per_token = [t for part in parts for t in part["per_token"]]
    return {"clients": clients, "client_processes": processes,
            "tokens_per_s": sum(part["generated"] for part in parts) / seconds,
            "first_token_p50_ms": 1e3 * percentile(first_tokens, 0.5),
            "first_token_p99_ms": 1e3 * percentile(first_tokens, 0.99),
            "per_token_p50_ms": 1e3 * percentile(per_token, 0.5), "per_token_p99_ms": 1e3 * percentile(per_token, 0.99)}


async def score_load(url: str, lines: list[str], clients: int, chunk: int) -> float:
    import httpx

    chunks = [lines[i:i + chunk] for i in range(0, len(lines), chunk)]
    queue: asyncio.Queue = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def client(http) -> None:
        while not queue.empty():
            texts = queue.get_nowait()
            response = await http.post(url + "/v1/score", json={"input": texts, "per_token": False})
            assert response.status_code == 200, response.text[:200]

    async with httpx.AsyncClient(timeout=600) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - start


def sample_rate(model: str, rows: int, length: int, repeats: int) -> float:
    """`sample -n rows`'s tokens/s, in-process and warm (its command's start left out)."""
    from rnncli.config import SampleConfig
    from rnncli.inference.sample import sample_group
    from rnncli.tasks import load_model_checkpoint

    ck = load_model_checkpoint(model, training_state=False)
    config = SampleConfig(length=length, temperature=0.8, num_samples=rows, seed=1)
    rates = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        samples = sample_group(ck, "ROMEO:", config, range(rows), 1)
        rates.append(sum(len(s.tokens) for s in samples) / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def score_seconds(model: str, lines: list[str], repeats: int) -> float:
    from rnncli.inference.score import score_sentences
    from rnncli.tasks import load_model_checkpoint

    ck = load_model_checkpoint(model, training_state=False)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        score_sentences(ck, lines)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    if sys.argv[1:2] == ["--clients-of"]:  # one client process of generation_load
        url, clients, first_seed, start_at, seconds, tokens, kind = sys.argv[2:9]
        print(json.dumps(asyncio.run(clients_of_one_process(url, int(clients), int(first_seed), float(start_at),
                                                            float(seconds), int(tokens), kind))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load time per client count")
    parser.add_argument("--tokens", type=int, default=256, help="max_tokens of each completion")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--client", choices=["httpx", "lean"], default="httpx",
                        help="the streaming clients: httpx (what users have) or LeanConnection (asyncio's streams)")
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--score-chunk", type=int, default=100, help="lines per /v1/score request")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    corpus = next((p for p in CORPORA if p.exists()), None)
    if corpus is None:
        sys.exit("tinyshakespeare.txt not found: run `make corpora` first")
    work = Path(tempfile.mkdtemp(prefix="rnncli-serve-bench-"))
    model = str(work / "charlstm.npz")
    rnncli = [sys.executable, "-m", "rnncli"]
    subprocess.run([*rnncli, "train", str(corpus), "--cell", "lstm", "--layers", "2", "--hidden", "512", "--embed",
                    "64", "--max-steps", "3", "--out", model, "-q"], check=True)
    lines = [line for line in corpus.read_text().splitlines() if line.strip()][: args.sentences]
    text_file = work / "lines.txt"
    text_file.write_text("\n".join(lines) + "\n")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*rnncli, "serve", "--model", model, "--port", str(port), "-q"])
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        rows = []
        references = []
        for clients in (int(c) for c in args.clients.split(",")):
            generation_load(url, clients, 2.0, args.tokens, args.client)  # warm: the loads' first requests
            if clients != 32:
                rows.append(generation_load(url, clients, args.seconds, args.tokens, args.client))
            else:  # the target's two sides interleaved, so that the host's drift hits both alike
                runs = []
                for _ in range(args.repeats):
                    references.append(sample_rate(model, 32, args.tokens, 3))
                    runs.append(generation_load(url, clients, args.seconds, args.tokens, args.client))
                references.append(sample_rate(model, 32, args.tokens, 3))
                rows.append(sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2])
                rows[-1]["runs_tokens_per_s"] = [r["tokens_per_s"] for r in runs]
            print(json.dumps(rows[-1]), flush=True)
        served_score = min(asyncio.run(score_load(url, lines, 16, args.score_chunk)) for _ in range(args.repeats))
    finally:
        server.terminate()
        server.wait(60)
    reference = statistics.median(references) if references else sample_rate(model, 32, args.tokens, args.repeats)
    one = next((r["tokens_per_s"] for r in rows if r["clients"] == 1), None)
    at32 = next((r["tokens_per_s"] for r in rows if r["clients"] == 32), None)
    in_process = score_seconds(model, lines, args.repeats)
    start = time.perf_counter()
    subprocess.run([*rnncli, "score", "--model", model, "--file", str(text_file), "--json"], check=True,
                   stdout=subprocess.DEVNULL)
    command = time.perf_counter() - start
    tokens = sum(len(line) + 1 for line in lines)
    result = {
        "machine": machine(),
        "model": "lstm 2 x 512, embedding 64, char level (tiny-shakespeare)",
        "client": args.client, "tokens_per_request": args.tokens,
        "generation": rows,
        "sample_n32_tokens_per_s": reference,
        "sample_n32_runs_tokens_per_s": references,
        "at_32_over_sample_n32": at32 / reference if at32 else None,
        "at_32_over_one_client": at32 / one if at32 and one else None,
        "score": {"sentences": len(lines), "tokens": tokens, "served_16_clients_s": served_score,
                  "served_tokens_per_s": tokens / served_score, "score_in_process_s": in_process,
                  "score_file_command_s": command, "served_over_in_process": in_process / served_score,
                  "served_over_command": command / served_score},
    }
    print(json.dumps(result, indent=2))
    write_results("serve", result)
    os.environ.pop("RNNCLI_MODEL", None)


if __name__ == "__main__":
    main()
