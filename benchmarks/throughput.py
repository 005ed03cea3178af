"""Throughput of the openai backend against a loopback server with fixed latency.

N distinct calls at concurrency C through `cotfaith.models.openai_chat.OpenAIChat` (the real
openai SDK, our retry layer, rate limiter and per-call parsing) and the request cache; the
server (tests/fakeapi, `--echo`, in its own process) sleeps `latency` per request. The ideal
wall time is N x latency / C; we print ideal / achieved (1.0 is perfect). Then the per-call cost
of a cache hit (lookup + decode), the price every rerun and replay pays.

    python benchmarks/throughput.py [--calls 2000] [--concurrency 64] [--latency 1.0 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.fakeapi

from cotfaith.cache import CachedModel, CacheMode, RequestCache  # noqa: E402
from cotfaith.models.base import Message, ModelRequest  # noqa: E402
from cotfaith.models.openai_chat import OpenAIChat  # noqa: E402
from tests.fakeapi import ServerProcess  # noqa: E402

KEY = "sk-bench"


def requests(n: int) -> list[ModelRequest]:
    return [
        ModelRequest(
            messages=(Message("user", f"Question {i}: pick a letter."),),
            max_tokens=1,
            top_logprobs=5,
        )
        for i in range(n)
    ]


async def drive(base_url: str, calls: int, concurrency: int, cache_path: Path) -> float:
    import os

    os.environ["BENCH_KEY"] = KEY
    model = OpenAIChat(
        {
            "name": "fake-gpt",
            "base_url": base_url,
            "api_key_env": "BENCH_KEY",
            "concurrency": concurrency,
            "retries": 0,
            "timeout": 60,
        },
        provider="openai_compatible",
    )
    cache = RequestCache(cache_path, CacheMode.read_write)
    client = CachedModel(model, cache)
    reqs = requests(calls)
    # open the connection pool first (one connection per slot), as a long run has it open
    warm = [
        ModelRequest(messages=(Message("user", f"warm-up {i}"),), max_tokens=1)
        for i in range(concurrency)
    ]
    await asyncio.gather(*(client.generate(r) for r in warm))
    started = time.perf_counter()
    await asyncio.gather(*(client.generate(r) for r in reqs))
    elapsed = time.perf_counter() - started
    await model.aclose()
    cache.close()
    return elapsed


async def hits(cache_path: Path, calls: int, base_url: str) -> float:
    model = OpenAIChat(
        {"name": "fake-gpt", "base_url": base_url, "api_key_env": None},
        provider="openai_compatible",
    )
    cache = RequestCache(cache_path, CacheMode.replay)
    client = CachedModel(model, cache)
    reqs = requests(calls)
    started = time.perf_counter()
    for r in reqs:
        await client.generate(r)
    elapsed = time.perf_counter() - started
    assert client.stats.cache_hits == calls
    cache.close()
    return elapsed / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, nargs="+", default=[1.0, 0.1])
    args = ap.parse_args()
    for latency in args.latency:
        with (
            tempfile.TemporaryDirectory() as tmp,
            ServerProcess(
                "--api",
                "openai",
                "--models",
                "fake-gpt",
                "--latency",
                str(latency),
                "--echo",
                key=KEY,
            ) as srv,
        ):
            cache_path = Path(tmp) / "cache.sqlite"
            elapsed = asyncio.run(drive(srv.base_url, args.calls, args.concurrency, cache_path))
            ideal = args.calls * latency / args.concurrency
            print(
                f"latency {latency * 1000:.0f} ms, {args.calls} calls, concurrency "
                f"{args.concurrency}: achieved {elapsed:.2f} s, ideal {ideal:.2f} s, "
                f"ratio {ideal / elapsed:.3f}"
            )
            if latency == args.latency[-1]:
                per_hit = asyncio.run(hits(cache_path, args.calls, srv.base_url))
                print(
                    f"cache hit: {per_hit * 1000:.3f} ms per call "
                    f"({args.calls} hits, lookup + decode)"
                )


if __name__ == "__main__":
    main()
