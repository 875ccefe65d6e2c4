"""Serving over HTTP: throughput and latency of `hf-genrec serve` under load, and what micro-batching gains.

    python benchmarks/serve_load.py outputs/ml-100k --data-dir ../shared/data          # 1, 8 and 64 clients
    python benchmarks/serve_load.py outputs/ml-100k --requests 20 --output /tmp/serve_load.json   # a smoke run

Starts the real server (``python -m hf_genrec.cli.main serve BUNDLE``) on a free loopback port, once micro-batched
(``--max-batch``, ``--max-wait-ms``) and once with ``--max-batch 1`` (one beam search per request), and at each level
of concurrency runs that many asynchronous clients (``httpx.AsyncClient``), each posting one history at a time
(``{"history": [...], "k": K}``, the bundle's own history exclusion and fusion: the fast path) until ``--requests``
requests are answered or ``--max-seconds`` have passed. The histories are the dataset's test users (leave-one-out,
the bundle's ``max_history``), drawn in a seeded order, or the lines of ``--histories`` (one JSON list of item ids per
line). Per server and level it reports requests per second, p50 and p99 latency and the errors (any answer but 200,
or no answer), and writes the record to ``benchmarks/results/serve_load.json`` (``--output``).

The clients share the machine with the server: on a small CPU they take some of its time, more at 64 clients.
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
import time
from pathlib import Path

import httpx
import numpy as np
from machine import write_record  # benchmarks/machine.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="A saved recommender (a folder written by `hf-genrec train`).")
    parser.add_argument("--dataset", default=None, help="Whose test users to send (default: the bundle's dataset).")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--histories", default=None, help="A .jsonl of histories to send instead of the test users.")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 64], help="Concurrent clients, per run.")
    parser.add_argument("--requests", type=int, default=1000, help="Requests per level (the bound in requests).")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="Per level: stop sending after this long.")
    parser.add_argument("--warmup", type=int, default=10, help="Requests sent before each server is measured.")
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=64, help="The micro-batched server's --max-batch.")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="The micro-batched server's --max-wait-ms.")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the --max-batch 1 server.")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="Seconds to wait for /health.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = parser.parse_args(argv)
    if args.requests < 1 or min(args.levels) < 1 or args.max_seconds <= 0:
        parser.error("--requests, every --levels value and --max-seconds must be positive.")
    return args


def read_histories(args: argparse.Namespace) -> tuple[list[list[str]], str]:
    """The histories to send, shuffled with ``--seed``, and where they came from."""
    if args.histories:
        lines = Path(args.histories).read_text(encoding="utf-8").splitlines()
        histories = [[str(item) for item in json.loads(line)] for line in lines if line.strip()]
        source = args.histories
    else:
        from hf_genrec.bundle.config import GenRecConfig
        from hf_genrec.data import leave_one_out, load_interactions

        config = GenRecConfig.from_pretrained(args.bundle)
        dataset = args.dataset or config.dataset
        if not dataset:
            raise SystemExit("The bundle names no dataset: pass --dataset NAME or --histories FILE.")
        test = leave_one_out(load_interactions(dataset, args.data_dir), max_history=config.max_history)["test"]
        histories = [list(history) for history in test["history"]]
        source = f"{dataset} test users (leave-one-out)"
    if not histories:
        raise SystemExit("No histories to send.")
    order = np.random.default_rng(args.seed).permutation(len(histories))
    return [histories[i] for i in order], source


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bundle: str, port: int, max_batch: int, max_wait_ms: float, timeout: float) -> subprocess.Popen:
    """`hf-genrec serve` in a subprocess, once it answers ``/health``."""
    command = [sys.executable, "-m", "hf_genrec.cli.main", "serve", bundle, "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server exited with status {server.returncode}: {' '.join(command)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit(f"The server did not answer /health within {timeout:.0f} s.")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def load(url: str, histories: list[list[str]], clients: int, requests: int, k: int, max_seconds: float) -> dict:
    """``clients`` concurrent clients post one history each at a time until ``requests`` are sent or time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    stop_at = time.monotonic() + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < stop_at:
            history = histories[sent % len(histories)]
            sent += 1
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/recommend", json={"history": history, "k": k})
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
            except httpx.HTTPError as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - began
    ms = sorted(1000 * x for x in latencies)
    return {
        "requests": sent,
        "answered": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(seconds, 3),
        "stopped_by_time": sent < requests,
        "requests_per_second": len(latencies) / seconds if seconds else None,
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
        "mean_ms": statistics.fmean(ms) if ms else None,
    }


def measure(args: argparse.Namespace, histories: list[list[str]], max_batch: int, max_wait_ms: float) -> dict:
    port = free_port()
    server = start_server(args.bundle, port, max_batch, max_wait_ms, args.startup_timeout)
    url = f"http://127.0.0.1:{port}"
    try:
        info = httpx.get(f"{url}/info", timeout=10).json()
        if args.k > info["num_beams"]:
            raise SystemExit(f"-k {args.k} is above the bundle's num_beams={info['num_beams']}.")
        asyncio.run(load(url, histories, 1, args.warmup, args.k, args.max_seconds))  # first calls build the trie
        runs = {}
        for clients in args.levels:
            runs[str(clients)] = run = asyncio.run(
                load(url, histories, clients, args.requests, args.k, args.max_seconds)
            )
            print(f"  max_batch={max_batch:<3} {clients:>3} clients: {run['requests_per_second'] or 0:8.1f} req/s, "
                  f"p50 {run['p50_ms'] or 0:7.1f} ms, p99 {run['p99_ms'] or 0:7.1f} ms, {run['errors']} errors", flush=True)  # fmt: skip
        return {"info": info, "runs": runs}
    finally:
        stop_server(server)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    histories, source = read_histories(args)
    print(f"{len(histories)} histories from {source}; levels {args.levels}, {args.requests} requests each", flush=True)
    batched = measure(args, histories, args.max_batch, args.max_wait_ms)
    name = f"micro-batched (max_batch {args.max_batch}, max_wait_ms {args.max_wait_ms:g})"
    runs = {name: batched["runs"]}
    gain = {}
    if not args.no_baseline:
        single = measure(args, histories, 1, 0.0)
        runs["one search per request (max_batch 1)"] = single["runs"]
        for clients, run in batched["runs"].items():
            base = single["runs"][clients]["requests_per_second"]
            gain[clients] = run["requests_per_second"] / base if base and run["requests_per_second"] else None
    info = batched["info"]
    record = {
        "bundle": args.bundle,
        "dataset": info.get("dataset"),
        "histories": source,
        "k": args.k,
        "num_beams": info["num_beams"],
        "fusion": info["fusion"],
        "catalogue_size": info["catalogue_size"],
        "requests_per_level": args.requests,
        "max_seconds_per_level": args.max_seconds,
        "runs": runs,
        "gain": gain,
        "errors": sum(run["errors"] for levels in runs.values() for run in levels.values()),
        "notes": "Server and clients on one machine, over the loopback address; each request one history. "
        "Gain: the micro-batched server's requests/s over the one-search-per-request server's.",
    }
    write_record(record, args.output)


if __name__ == "__main__":
    main()
