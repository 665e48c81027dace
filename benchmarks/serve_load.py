"""Load test of `lmforge serve`: many concurrent streaming clients on loopback for a while.

    python benchmarks/serve_load.py --run-dir runs/tiny [--clients 64] [--duration 60] [--max-tokens 32]
    python benchmarks/serve_load.py --run-dir runs/tiny --clients 64 --hostile 4 --duration 60

Starts `lmforge serve` as a subprocess on 127.0.0.1 (a free port), waits for /health, then
runs --clients asyncio clients for --duration seconds. Each client loops: one streaming
chat completion (a different question each time, temperature 0.8, include_usage), reading
every event to `data: [DONE]`. Reported: completed requests and requests/s, generated
tokens/s, time to first token p50/p99 (request sent -> first content event; also without
the first 5 s, when all clients arrive at once on a cold server), the gap between one
content event and the next within a stream (inter-token gap p50/p99), failed requests
(any non-200 but 429, error event, or missing [DONE]), requests refused with 429 (counted
apart: the server's per-key concurrency limit, after which the client waits Retry-After)
and the server's resident memory sampled every second (first, last, peak), so growth over
the run shows. Loopback only, bounded by --duration; the server is stopped at the end.

--hostile N makes N of the --clients hostile and runs two phases of --duration each on the
same server: first the clients - N honest clients alone ("unloaded"), then the same honest
clients with the N hostile ones beside them, which loop over: a 50 MB body with a
Content-Length, a 50 MB chunked body without one (both refused with 413), a body sent one
byte a second (408 after serve.read_timeout_s) and headers sent one byte a second (the
connection is closed). The hostile clients run in a process of their own so they do not
slow the honest clients' event loop; its CPU time is reported, as it shares the machine's
cores with the server. The figure to watch is the honest clients' inter-token gap p99 in
the hostile phase against the unloaded one.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def client(index: int, url: str, model: str, deadline: float, max_tokens: int, stats: dict):
    """An honest client: streaming chat completions back to back until the deadline."""
    questions = ["Who was Ada Berg?", "Where is Tromsø?", "What did Nikola Tesla invent?", "Hva er 12 + 30?",
                 "Tell me a story.", "Hvem var Ada Berg?"]
    async with httpx.AsyncClient(timeout=60) as http:
        n = 0
        while time.monotonic() < deadline:
            body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                    "temperature": 0.8, "max_tokens": max_tokens, "seed": index * 100_000 + n,
                    "messages": [{"role": "user", "content": questions[(index + n) % len(questions)]}]}
            n += 1
            sent = time.monotonic()
            first = last = None
            done = False
            try:
                async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
                    if response.status_code == 429:     # the concurrency limit: not a failure, wait and retry
                        stats["rejected_429"] += 1
                        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                        continue
                    if response.status_code != 200:
                        stats["failed"] += 1
                        stats["errors"].append(f"status {response.status_code}")
                        continue
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        payload = line[6:]
                        if payload == "[DONE]":
                            done = True
                            break
                        event = json.loads(payload)
                        if "error" in event:
                            stats["errors"].append(event["error"]["message"])
                            break
                        if event.get("usage"):
                            stats["tokens"] += event["usage"]["completion_tokens"]
                        if event["choices"] and event["choices"][0]["delta"].get("content"):
                            now = time.monotonic()
                            if first is None:
                                first = now
                            else:
                                stats["gaps"].append(now - last)
                            last = now
            except (httpx.HTTPError, json.JSONDecodeError) as err:
                stats["errors"].append(f"{type(err).__name__}: {err}")
                stats["failed"] += 1
                continue
            if not done:
                stats["failed"] += 1
                continue
            stats["completed"] += 1
            if first is not None:
                stats["ttft"].append(first - sent)
                if sent - stats["start"] > 5:
                    stats["ttft_steady"].append(first - sent)


async def sample_memory(pid: int, deadline: float, samples: list[float]):
    while time.monotonic() < deadline:
        samples.append(rss_mib(pid))
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- hostile clients

BIG = 50_000_000
CHUNK = b"x" * 65536


async def answer_or_close(reader, timeout: float) -> str | None:
    """What the server did within `timeout`: "413" (a status), "closed", or None (nothing yet)."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except asyncio.TimeoutError:
        return None
    except OSError:
        return "closed"
    if not data:
        return "closed"
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "garbled"


async def hostile_client(kind: str, host: str, port: int, deadline: float, outcomes: collections.Counter):
    """kind "big": 50 MB bodies (declared, then chunked, in turn) as fast as the server takes
    them; kind "slow": a body, then headers, one byte a second. Each until the server answers
    or closes; then again, until the deadline."""
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            outcomes["connect failed"] += 1
            await asyncio.sleep(0.1)
            continue
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        outcome = None
        try:
            if kind == "big":
                chunked = n % 2 == 0
                # listen while sending: once the write fails, asyncio's reader would only raise
                answer = asyncio.create_task(answer_or_close(reader, 30.0))
                writer.write((head + ("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}")
                              + "\r\n\r\n").encode())
                piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
                try:
                    for _ in range(BIG // len(CHUNK)):
                        if answer.done():
                            break
                        writer.write(piece)
                        await writer.drain()
                except OSError:
                    pass             # the server closed: it answered, or will have
                outcome = await answer
                kind_name = "big chunked" if chunked else "big declared"
            else:
                slow_headers = n % 2 == 0
                trickle = (head + "X-Padding: " + "a" * 1000 + "\r\n\r\n").encode() if slow_headers else b"{" * 1000
                if not slow_headers:
                    writer.write((head + "Content-Length: 1000\r\n\r\n").encode())
                for byte in trickle:
                    try:
                        writer.write(bytes([byte]))
                        await writer.drain()
                    except OSError:
                        outcome = "closed"
                        break
                    outcome = await answer_or_close(reader, 1.0)    # also the one-second pause
                    if outcome is not None or time.monotonic() > deadline:
                        break
                kind_name = "slow headers" if slow_headers else "slow body"
        finally:
            writer.close()
        outcomes[f"{kind_name}: {outcome or 'unfinished at the deadline'}"] += 1


def hostile_worker(host: str, port: int, count: int, duration: float, results) -> None:
    """The hostile clients, half "big" and half "slow", in their own process."""
    outcomes: collections.Counter = collections.Counter()

    async def run():
        deadline = time.monotonic() + duration
        await asyncio.gather(*(hostile_client("big" if i % 2 == 0 else "slow", host, port, deadline, outcomes)
                               for i in range(count)))
    asyncio.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put({"outcomes": dict(outcomes), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)})


# ---------------------------------------------------------------- one phase of load

async def load(url: str, model: str, clients: int, duration: float, max_tokens: int, pid: int,
               hostile: int = 0) -> dict:
    start = time.monotonic()
    stats = {"completed": 0, "failed": 0, "rejected_429": 0, "tokens": 0, "ttft": [], "ttft_steady": [], "gaps": [],
             "errors": [], "start": start}
    memory: list[float] = []
    deadline = start + duration
    worker = None
    if hostile:
        results = multiprocessing.get_context("spawn").Queue()
        host, port = url.removeprefix("http://").split(":")
        worker = multiprocessing.get_context("spawn").Process(
            target=hostile_worker, args=(host, int(port), hostile, duration, results))
        worker.start()
    await asyncio.gather(sample_memory(pid, deadline, memory),
                         *(client(i, url, model, deadline, max_tokens, stats) for i in range(clients)))
    wall = time.monotonic() - start
    memory.append(rss_mib(pid))
    hostile_report = {}
    if worker is not None:
        hostile_report = results.get(timeout=120)
        worker.join(timeout=10)
    return {
        "honest_clients": clients, "hostile_clients": hostile, "duration_seconds": round(wall, 1),
        "max_tokens": max_tokens, "completed_requests": stats["completed"], "failed_requests": stats["failed"],
        "rejected_429": stats["rejected_429"],
        "requests_per_second": round(stats["completed"] / wall, 2),
        "generated_tokens_per_second": round(stats["tokens"] / wall, 1),
        "ttft_p50_seconds": round(percentile(stats["ttft"], 50), 3),
        "ttft_p99_seconds": round(percentile(stats["ttft"], 99), 3),
        # without the first 5 s, when all clients arrive at once on a cold server
        "ttft_p50_after_5s_seconds": round(percentile(stats["ttft_steady"], 50), 3),
        "ttft_p99_after_5s_seconds": round(percentile(stats["ttft_steady"], 99), 3),
        "inter_token_gap_p50_ms": round(1000 * percentile(stats["gaps"], 50), 1),
        "inter_token_gap_p99_ms": round(1000 * percentile(stats["gaps"], 99), 1),
        "server_rss_mib_first": round(memory[0], 1), "server_rss_mib_last": round(memory[-1], 1),
        "server_rss_mib_peak": round(max(memory), 1),
        "server_rss_mib_after_warmup": round(memory[min(len(memory) - 1, 5)], 1),
        "server_rss_mib_every_10s": [round(m, 1) for m in memory[::10]],
        "first_errors": stats["errors"][:5],
        **({"hostile_outcomes": hostile_report.get("outcomes"),
            "hostile_process_cpu_seconds": hostile_report.get("cpu_seconds")} if hostile else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--hostile", type=int, default=0,
                        help="of the clients, this many are hostile; runs an unloaded phase first (see above)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "lmforge", "serve", "--run-dir", args.run_dir, "--port", str(port),
               "--max-batch", str(args.max_batch)] + (["--stage", args.stage] if args.stage else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(command, env=env)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not come up")
            time.sleep(0.2)
        model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        honest = args.clients - args.hostile
        phases = {"unloaded": 0, "hostile": args.hostile} if args.hostile else {"load": 0}
        results = {}
        for phase, hostile in phases.items():
            results[phase] = asyncio.run(load(url, model, honest, args.duration, args.max_tokens, server.pid, hostile))
            results[phase]["server_still_healthy"] = httpx.get(url + "/health").json()["status"] == "ok"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    for phase, figures in results.items():
        if len(results) > 1:
            print(f"--- {phase}")
        for key, value in figures.items():
            print(f"{key:<30} {json.dumps(value)}")
    if args.hostile:
        ratio = results["hostile"]["inter_token_gap_p99_ms"] / results["unloaded"]["inter_token_gap_p99_ms"]
        results["inter_token_gap_p99_hostile_over_unloaded"] = round(ratio, 2)
        print(f"--- honest clients' inter-token gap p99, hostile / unloaded: {ratio:.2f}x (target <= 2x)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(figures["failed_requests"] == 0 for figures in results.values() if isinstance(figures, dict)) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
