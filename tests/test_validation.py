"""The metrics validated against the simulated model, whose faithfulness is known.

Tolerance, derived. With one CoT sample per question, the measured AOC is the mean over Q
independent questions of a per-question score X_q in [0, 1] (AOC = sum_n w_n AOC_n reduces to the
mean of per-CoT AOCs when every CoT has all its k points). Its expectation is the knob-implied
value mu = implied_aoc(knobs, lengths). For X in [0, 1], Var(X) <= E[X^2] - mu^2 <= E[X] - mu^2 =
mu (1 - mu), so the standard error is at most sqrt(mu (1 - mu) / Q); we allow 4 of those
(a false alarm rate below 1e-4 under the normal approximation).
"""

from __future__ import annotations

import asyncio
import math

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cotfaith.cli import CONFIG_DIR
from cotfaith.metrics import aoc_with_ci
from cotfaith.models.simulated import Knobs, SimulatedModel, implied_aoc
from cotfaith.records import read_records
from cotfaith.runner import run_async
from tests.helpers import run_cli

Q = 1000


def tolerance(mu: float, n_questions: int) -> float:
    return 4 * math.sqrt(max(mu * (1 - mu), 1e-12) / n_questions)


def knobs_of(cfg: dict) -> Knobs:
    return Knobs(
        **{
            k: cfg[k]
            for k in ("faithfulness", "accuracy_cot", "accuracy_no_cot", "verify_rate", "seed")
        }
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`cotfaith -m model.faithfulness=0,0.5,1` through real Hydra multirun."""
    cwd = tmp_path_factory.mktemp("sweep")
    run_cli(
        cwd,
        "-m",
        "model.faithfulness=0,0.5,1",
        f"task.n_questions={Q}",
        "sampling.n_samples=1",
        "report.n_bootstrap=200",
        "hydra.sweep.dir=outputs/sweep",
    )
    jobs = sorted((cwd / "outputs" / "sweep").glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(jobs) == 3
    out = {}
    for job in jobs:
        import yaml

        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        s = pd.read_csv(job / "summary.csv").set_index("intervention")
        out[cfg["model"]["faithfulness"]] = (cfg, s, read_records(job / "records.jsonl"))
    return out


def test_aoc_rises_with_faithfulness_and_vanishes_at_zero(sweep):
    aoc = {f: s.loc["truncation", "aoc"] for f, (_, s, _) in sweep.items()}
    assert aoc[0.0] < 0.05
    assert aoc[0.0] < aoc[0.5] < aoc[1.0]


@pytest.mark.parametrize("faithfulness", [0.0, 0.5, 1.0])
def test_aoc_matches_the_value_the_knobs_imply(sweep, faithfulness):
    cfg, s, records = sweep[faithfulness]
    ref = records[records["intervention"] == "cot"]
    mu = implied_aoc(
        knobs_of(cfg["model"]), list(zip(ref["n_steps"], ref["n_choices"], strict=True))
    )
    measured = s.loc["truncation", "aoc"]
    assert abs(measured - mu) <= tolerance(mu, Q), (measured, mu, tolerance(mu, Q))
    # the bootstrap CI should cover the truth too (not guaranteed, but at 95% with these seeds)
    assert s.loc["truncation", "aoc_ci_low"] <= mu <= s.loc["truncation", "aoc_ci_high"]


def test_accuracies_match_the_knobs(sweep):
    cfg, s, _ = sweep[0.5]
    k = knobs_of(cfg["model"])
    acc_cot = s.loc["truncation", "accuracy_cot"]
    acc_no = s.loc["truncation", "accuracy_no_cot"]
    expected_no = k.faithfulness * k.accuracy_no_cot + (1 - k.faithfulness) * k.accuracy_cot
    for measured, p in ((acc_cot, k.accuracy_cot), (acc_no, expected_no)):
        assert abs(measured - p) <= 4 * math.sqrt(p * (1 - p) / Q), (measured, p)


def test_aoc_is_exact_given_the_organisms_hidden_state(tmp_path):
    """Conditioned on what the organism decided, the metric must be exact, not just close."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "task.n_questions=150",
                "sampling.n_samples=3",
                "model.faithfulness=0.6",
                "progress=false",
                f"cache.path={tmp_path / 'c.sqlite'}",
            ],
        )
    asyncio.run(run_async(cfg, tmp_path / "run", tmp_path))
    records = read_records(tmp_path / "run" / "records.jsonl")
    organism = SimulatedModel(knobs_of(cfg.model))
    traces = pd.read_json(tmp_path / "run" / "traces.jsonl", lines=True)
    per_cot = []
    for t in traces.itertuples():
        letters = tuple("ABCDEFGHIJ"[: len(t.choices)])
        truth = organism.ground_truth(t.question, letters, tuple(t.choices))
        n = len(t.steps)
        # a faithful CoT changes its answer at every k < n exactly when the prior differs from
        # the CoT's conclusion; the trapezoid over k = 0..n then gives (2n - 1) / (2n)
        changed = truth["faithful"] and truth["prior"] != t.answer
        per_cot.append((2 * n - 1) / (2 * n) if changed else 0.0)
    exact = sum(per_cot) / len(per_cot)
    measured, lo, hi = aoc_with_ci(records, n_boot=100)
    assert measured == pytest.approx(exact, abs=1e-12)
    assert lo <= measured <= hi
