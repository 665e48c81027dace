"""Load test of `lmforge serve`: many concurrent streaming clients on loopback for a while.

    python benchmarks/serve_load.py --run-dir runs/tiny [--clients 64] [--duration 60] [--max-tokens 32]

Starts `lmforge serve` as a subprocess on 127.0.0.1 (a free port), waits for /health, then
runs --clients asyncio clients for --duration seconds. Each client loops: one streaming
chat completion (a different question each time, temperature 0.8, include_usage), reading
every event to `data: [DONE]`. Reported: completed requests and requests/s, generated
tokens/s, time to first token p50/p99 (request sent -> first content event; also without
the first 5 s, when all clients arrive at once on a cold server), failed
requests (any non-200, error event, or missing [DONE]) and the server's resident memory
sampled every second (first, last, peak), so growth over the run shows. Loopback only,
bounded by --duration; the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
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
            first = None
            done = False
            try:
                async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
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
                        if first is None and event["choices"] and "content" in event["choices"][0]["delta"] \
                                and event["choices"][0]["delta"]["content"]:
                            first = time.monotonic()
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


async def load(url: str, model: str, clients: int, duration: float, max_tokens: int, pid: int) -> dict:
    start = time.monotonic()
    stats = {"completed": 0, "failed": 0, "tokens": 0, "ttft": [], "ttft_steady": [], "errors": [], "start": start}
    memory: list[float] = []
    deadline = start + duration
    await asyncio.gather(sample_memory(pid, deadline, memory),
                         *(client(i, url, model, deadline, max_tokens, stats) for i in range(clients)))
    wall = time.monotonic() - start
    memory.append(rss_mib(pid))
    return {
        "clients": clients, "duration_seconds": round(wall, 1), "max_tokens": max_tokens,
        "completed_requests": stats["completed"], "failed_requests": stats["failed"],
        "requests_per_second": round(stats["completed"] / wall, 2),
        "generated_tokens_per_second": round(stats["tokens"] / wall, 1),
        "ttft_p50_seconds": round(percentile(stats["ttft"], 50), 3),
        "ttft_p99_seconds": round(percentile(stats["ttft"], 99), 3),
        # without the first 5 s, when all clients arrive at once on a cold server
        "ttft_p50_after_5s_seconds": round(percentile(stats["ttft_steady"], 50), 3),
        "ttft_p99_after_5s_seconds": round(percentile(stats["ttft_steady"], 99), 3),
        "server_rss_mib_first": round(memory[0], 1), "server_rss_mib_last": round(memory[-1], 1),
        "server_rss_mib_peak": round(max(memory), 1),
        "server_rss_mib_after_warmup": round(memory[min(len(memory) - 1, 5)], 1),
        "server_rss_mib_every_10s": [round(m, 1) for m in memory[::10]],
        "first_errors": stats["errors"][:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--clients", type=int, default=64)
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
        results = asyncio.run(load(url, model, args.clients, args.duration, args.max_tokens, server.pid))
        results["server_still_healthy"] = httpx.get(url + "/health").json()["status"] == "ok"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    for key, value in results.items():
        print(f"{key:<30} {json.dumps(value)}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["failed_requests"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
