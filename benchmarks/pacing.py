"""Pacing under rate limits: how close a rate-limited run comes to what the server allows.

Two measurements through `cotfaith.models.openai_chat.OpenAIChat` (the real openai SDK, the
retry layer and the backend's Pacer) against loopback servers:

1. Same fault sequence, two kinds. The fake server (tests/fakeapi, its own process) fails the
   same arrivals, drawn with one seed, either with 429 + "Retry-After: 0" or with 500. A 429
   that asks for no wait should cost no more than a 500 (which waits its own short backoff):
   we print time(429) / time(500), 1.0 or less wanted. Before the Pacer, every caller paused
   for the 429'd call's exponential backoff: 126 s against 49 s (ratio 2.6).
2. A server with a capacity: it works on at most K requests at once and answers 429 beyond
   (with "Retry-After: 0", and without any Retry-After), as a provider's concurrency limit
   or a saturated vLLM behind a gateway does. The client is configured far above K. Ideal
   wall time is N x latency / K; we print ideal / achieved (1.0 is perfect) and how many
   requests were refused per call made.

    python benchmarks/pacing.py [--calls 400] [--concurrency 32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.fakeapi

from cotfaith.models.base import Message, ModelRequest  # noqa: E402
from cotfaith.models.openai_chat import OpenAIChat  # noqa: E402
from tests.fakeapi import ServerProcess, ServerThread  # noqa: E402

KEY = "sk-bench"


def requests(n: int, tag: str) -> list[ModelRequest]:
    return [
        ModelRequest(messages=(Message("user", f"{tag} {i}: pick a letter."),), max_tokens=1)
        for i in range(n)
    ]


async def drive(base_url: str, calls: int, concurrency: int, tag: str) -> tuple[float, OpenAIChat]:
    os.environ["BENCH_KEY"] = KEY
    model = OpenAIChat(
        {
            "name": "fake-gpt",
            "base_url": base_url,
            "api_key_env": "BENCH_KEY",
            "concurrency": concurrency,
            "retries": 30,
            "retry_initial": 0.5,
            "timeout": 60,
        },
        provider="openai_compatible",
    )
    # the run's own cap on calls in flight (CachedModel holds one like it)
    slots = asyncio.Semaphore(concurrency)

    async def one(r: ModelRequest) -> None:
        async with slots:
            await model.generate(r)

    started = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests(calls, tag)))
    elapsed = time.perf_counter() - started
    await model.aclose()
    return elapsed, model


def same_sequence(args: argparse.Namespace) -> None:
    times = {}
    for kind in ("500", "429_retry_after"):
        with ServerProcess(
            "--api", "openai", "--models", "fake-gpt", "--echo",
            "--latency", str(args.latency),
            "--fault-rate", str(args.fault_rate), "--faults", kind, "--fault-seed", "7",
            "--retry-after", "0",
            key=KEY,
        ) as srv:  # fmt: skip
            elapsed, model = asyncio.run(drive(srv.base_url, args.calls, args.concurrency, kind))
            times[kind] = elapsed
            print(
                f"  faults {kind:<16} {args.fault_rate:.0%}: {elapsed:6.2f} s, "
                f"{model.retry_stats.retries} retries, window low {model.pacer.lowest}"
            )
    ratio = times["429_retry_after"] / times["500"]
    print(
        f"same fault sequence: time(429, Retry-After 0) / time(500) = {ratio:.2f} (<= 1.0 wanted)"
    )


def capacity_app(capacity: int, latency: float, retry_after: str | None) -> web.Application:
    """An OpenAI-shaped server that works on `capacity` requests at once and refuses more."""
    state = {"busy": 0, "refused": 0, "served": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        if state["busy"] >= capacity:
            state["refused"] += 1
            headers = {"retry-after": retry_after} if retry_after is not None else {}
            body = {"error": {"message": "Too many concurrent requests", "type": "requests"}}
            return web.json_response(body, status=429, headers=headers)
        state["busy"] += 1
        try:
            await asyncio.sleep(latency)
        finally:
            state["busy"] -= 1
        state["served"] += 1
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "fake-gpt",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "A"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app["counts"] = state
    return app


def with_capacity(args: argparse.Namespace) -> None:
    for retry_after in ("0", None):
        app = capacity_app(args.capacity, args.latency, retry_after)
        with ServerThread(app) as srv:
            elapsed, model = asyncio.run(
                drive(srv.base_url, args.calls, args.concurrency, f"cap{retry_after}")
            )
        counts = app["counts"]
        ideal = args.calls * args.latency / args.capacity
        said = "Retry-After: 0" if retry_after is not None else "no Retry-After"
        print(
            f"server capacity {args.capacity}, client concurrency {args.concurrency}, {said}: "
            f"achieved {elapsed:.2f} s, ideal {ideal:.2f} s, ratio {ideal / elapsed:.2f}; "
            f"{counts['refused'] / args.calls:.2f} refusals per call, "
            f"window {model.pacer.lowest}..{model.pacer.limit} (of {args.concurrency}), "
            f"{model.pacer.cuts} cuts"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--fault-rate", type=float, default=0.3)
    ap.add_argument("--capacity", type=int, default=4)
    args = ap.parse_args()
    same_sequence(args)
    with_capacity(args)


if __name__ == "__main__":
    main()
