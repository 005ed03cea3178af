"""Offline pipeline throughput: achieved vs ideal wall time, and the cost of a cache hit.

The simulated model sleeps `latency` seconds per call, so with `concurrency` calls in flight the
ideal wall time of a run is (calls computed) x latency / concurrency; the ratio ideal/achieved
says how much of that the runner achieves (1.0 is perfect; our own per-call work lowers it).
A rerun is then served entirely from the cache: its wall time per call is the cost of a hit
(cache lookup + record writing + answer read-out).

Then the CPU cost per model call of each intervention set (latency 0, cache off, process CPU
time / calls): adding the other three Lanham interventions must cost no more CPU per call than
early answering alone (the ratio is printed).

    python benchmarks/pipeline.py [--questions 200] [--latency 0.1] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from cotfaith.cli import CONFIG_DIR
from cotfaith.runner import run_async

LANHAM = "intervention=[truncation,adding_mistakes,paraphrase,filler_tokens,no_cot]"


def run_once(overrides: list[str], out: Path, cache: Path) -> tuple[dict, float]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "progress=false", f"cache.path={cache}"])
    started = time.perf_counter()
    asyncio.run(run_async(cfg, out, out))
    elapsed = time.perf_counter() - started
    return json.loads((out / "run.json").read_text()), elapsed


def cpu_per_call(overrides: list[str], out: Path) -> float:
    """Process CPU seconds per model call with no latency and no cache (our own work only)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "progress=false", "cache.mode=off"])
    started = time.process_time()
    asyncio.run(run_async(cfg, out, out))
    cpu = time.process_time() - started
    return cpu / json.loads((out / "run.json").read_text())["calls"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    overrides = [
        f"task.n_questions={args.questions}",
        f"sampling.n_samples={args.samples}",
        f"model.latency={args.latency}",
        f"model.concurrency={args.concurrency}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run, elapsed = run_once(overrides, tmp / "cold", tmp / "cache.sqlite")
        computed = run["calls"] - run["cache_hits"]
        ideal = computed * args.latency / args.concurrency
        print(
            f"cold run: {run['calls']} requests, {computed} computed, "
            f"latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}"
        )
        print(f"  achieved {elapsed:.2f} s vs ideal {ideal:.2f} s: ratio {ideal / elapsed:.2f}")
        run, elapsed = run_once(overrides, tmp / "warm", tmp / "cache.sqlite")
        assert run["calls"] == run["cache_hits"]
        per_call_ms = elapsed / run["calls"] * 1000
        print(
            f"warm run (all {run['calls']} from cache): {elapsed:.2f} s, "
            f"{per_call_ms:.3f} ms per request end to end"
        )
        base = [f"task.n_questions={args.questions}", f"sampling.n_samples={args.samples}"]
        early = cpu_per_call([*base, "intervention=[truncation,no_cot]"], tmp / "cpu_early")
        every = cpu_per_call([*base, LANHAM], tmp / "cpu_all")
        print(
            f"CPU per model call: early answering {early * 1000:.3f} ms, all four Lanham "
            f"interventions {every * 1000:.3f} ms: ratio {every / early:.2f} (<= 1.0 wanted)"
        )


if __name__ == "__main__":
    main()
