"""Coverage of the 95% intervals: a simulation study on the organism, whose AOC is known.

One pipeline run of many questions (one CoT sample each) at a given faithfulness is cut into
`reps` disjoint sets of N questions (independent samples of questions); each set gets its own
cluster-bootstrap interval, and coverage is the share of intervals that hold the value the
organism's knobs imply for the population (organism_theory.implied_aoc over every CoT of the big
run). Coverage is printed with its binomial uncertainty (+- 1.96 sqrt(p(1-p)/reps)), for BCa
and percentile intervals, at N = 20, 50, 200.

    python benchmarks/coverage.py [--reps 100] [--faithfulness 0.3 0.8 1.0] [--sizes 20 50 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from cotfaith.bootstrap import ratio_interval
from cotfaith.cli import CONFIG_DIR
from cotfaith.curvestats import per_cot
from cotfaith.interventions.curves import points
from cotfaith.metrics import answered
from cotfaith.models.simulated import Knobs, implied_aoc
from cotfaith.records import REFERENCE, read_records
from cotfaith.runner import run_async


def big_run(faithfulness: float, n_questions: int, seed: int, out: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"model.faithfulness={faithfulness}",
                f"model.seed={seed}",
                f"task.n_questions={n_questions}",
                f"task.seed={seed}",
                "sampling.n_samples=1",
                "intervention=[truncation]",
                "cache.mode=off",
                "progress=false",
            ],
        )
    asyncio.run(run_async(cfg, out, out))
    records = answered(read_records(out / "records.jsonl"))
    ref = records[records["intervention"] == REFERENCE]
    fields = Knobs.__dataclass_fields__
    knobs = Knobs(**{k: cfg.model[k] for k in cfg.model if k in fields})
    truth = implied_aoc(
        knobs, [(int(n), int(m)) for n, m in zip(ref["n_steps"], ref["n_choices"], strict=True)]
    )
    cots, _ = per_cot(points(records[records["intervention"] == "truncation"]))
    return cots, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--faithfulness", type=float, nargs="+", default=[0.3, 0.8, 1.0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 200])
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    print(
        f"{'faith':>5} {'N':>4} {'method':>10} {'coverage':>9} {'+-':>6} {'above':>5} "
        f"{'below':>5}  (truth above / below the interval)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.faithfulness:
            total = max(args.sizes) * args.reps
            cots, truth = big_run(f, total, seed=1, out=Path(tmp) / f"f{f}")
            per_q = cots.groupby("question_id")["a"].agg(["sum", "count"])
            qs = per_q.index.to_numpy()
            rng = np.random.default_rng(0)
            for n in args.sizes:
                for method in ("bca", "percentile"):
                    hit = above = below = 0
                    order = rng.permutation(len(qs))
                    for r in range(args.reps):
                        pick = order[r * n : (r + 1) * n]
                        part = per_q.iloc[pick]
                        iv = ratio_interval(
                            part["sum"].to_numpy(),
                            part["count"].to_numpy(),
                            n_boot=args.n_boot,
                            seed=r,
                            method=method,
                        )
                        if iv.low <= truth <= iv.high:
                            hit += 1
                        elif truth > iv.high:
                            above += 1
                        else:
                            below += 1
                    p = hit / args.reps
                    pm = 1.96 * math.sqrt(max(p * (1 - p), 1e-9) / args.reps)
                    flag = "  <- few questions" if n < 30 else ""
                    print(
                        f"{f:5.2f} {n:4d} {method:>10} {p:9.3f} {pm:6.3f} {above:5d} "
                        f"{below:5d}{flag}"
                    )
            print(f"      (implied AOC {truth:.4f})")


if __name__ == "__main__":
    main()
