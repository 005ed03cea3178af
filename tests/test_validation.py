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
from cotfaith.models.simulated import Knobs, SimulatedModel, commitment_cdf, implied_aoc
from cotfaith.records import read_records
from cotfaith.runner import run_async
from tests.helpers import run_cli

Q = 1000


def tolerance(mu: float, n_questions: int) -> float:
    return 4 * math.sqrt(max(mu * (1 - mu), 1e-12) / n_questions)


def knobs_of(cfg: dict) -> Knobs:
    return Knobs(**{k: cfg[k] for k in Knobs.__dataclass_fields__ if k in cfg})


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
    knobs = knobs_of(cfg.model)
    organism = SimulatedModel(knobs)
    traces = pd.read_json(tmp_path / "run" / "traces.jsonl", lines=True)
    per_cot = []
    for t in traces.itertuples():
        letters = tuple("ABCDEFGHIJ"[: len(t.choices)])
        truth = organism.ground_truth(t.question, letters, tuple(t.choices))
        n = len(t.steps)
        # a faithful CoT whose prior differs from its conclusion answers the conclusion after
        # k steps exactly when its hidden commitment u < G(k/n); otherwise y = 1 throughout
        plan = organism.plan_of(t.question, letters, tuple(t.choices), t.cot)
        if truth["faithful"] and truth["prior"] != t.answer:
            y = [float(plan["u"] < commitment_cdf(knobs, k / n)) for k in range(n + 1)]
            per_cot.append(1 - sum((y[k] + y[k + 1]) / 2 for k in range(n)) / n)
        else:
            per_cot.append(0.0)
    exact = sum(per_cot) / len(per_cot)
    measured, lo, hi = aoc_with_ci(records, n_boot=100)
    assert measured == pytest.approx(exact, abs=1e-12)
    assert lo <= measured <= hi


# --------------------------------------------------------------------------- every intervention
LANHAM = "intervention=[truncation,adding_mistakes,paraphrase,filler_tokens,no_cot]"
QV = 300


def _summary_of(tmp_path, name: str, *overrides: str):
    """One in-process run (no report), its summary and the knobs behind it."""
    from cotfaith.interventions.base import StatSettings
    from cotfaith.metrics import summarize

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                LANHAM,
                f"task.n_questions={QV}",
                "sampling.n_samples=1",
                "model.mistake_invalid_rate=0",
                "progress=false",
                "cache.mode=off",
                *overrides,
            ],
        )
    asyncio.run(run_async(cfg, tmp_path / name, tmp_path))
    records = read_records(tmp_path / name / "records.jsonl")
    s = summarize(records, stats=StatSettings(n_bootstrap=100)).set_index("intervention")
    ref = records[(records["intervention"] == "cot") & records["n_steps"].notna()]
    cots = [(int(n), int(m)) for n, m in zip(ref["n_steps"], ref["n_choices"], strict=True)]
    return knobs_of(cfg.model), cots, s


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [1.0, 3.0])
@pytest.mark.parametrize("faithfulness", [0.0, 0.5, 1.0])
def test_every_lanham_metric_matches_the_organism(tmp_path, faithfulness, gamma):
    """Measured by the real pipeline and summary code vs the closed forms of
    cotfaith.models.organism_theory, within 4 standard errors of a mean of QV per-question
    scores in [0, 1] (the derivation at the top of this file); ratios (the conditional AOC)
    get the delta-method error of a ratio of two such means."""
    from cotfaith.models import organism_theory as th

    knobs, cots, s = _summary_of(
        tmp_path, "run", f"model.faithfulness={faithfulness}", f"model.commitment_gamma={gamma}"
    )

    def close(measured: float, mu: float, q: int = QV) -> None:
        assert abs(measured - mu) <= tolerance(mu, q) + 1e-9, (measured, mu, tolerance(mu, q))

    close(s.loc["truncation", "aoc"], th.implied_aoc(knobs, cots))
    close(s.loc["truncation", "changed_at_k0"], th.implied_p_changed(knobs, cots))
    close(s.loc["adding_mistakes", "aoc"], th.implied_mistakes_aoc(knobs, cots))
    close(s.loc["paraphrase", "paraphrase_accuracy"], th.implied_paraphrase_accuracy(knobs))
    close(s.loc["paraphrase", "paraphrase_same_answer"], th.implied_paraphrase_same_answer(knobs))
    close(s.loc["filler_tokens", "filler_accuracy"], th.implied_filler_accuracy(knobs, 5))
    close(s.loc["no_cot", "accuracy_no_cot"], th.implied_accuracy_no_cot(knobs))
    # the no-CoT prompt's own change rate: only a faithful question whose prior differs from
    # its CoT's conclusion changes, as at k = 0
    close(s.loc["no_cot", "changed_vs_no_cot"], th.implied_p_changed(knobs, cots))
    close(s.loc["paraphrase", "paraphrase_baseline_accuracy"], th.implied_accuracy_cot(knobs))
    p_changed = th.implied_p_changed(knobs, cots)
    if p_changed > 0.1:
        # E[a | changed] = AOC / P(changed); its error is about that of AOC over P(changed)
        cond = th.implied_conditional_aoc(knobs, cots)
        measured = s.loc["truncation", "aoc_given_changed"]
        assert abs(measured - cond) <= tolerance(cond, QV) / p_changed, (measured, cond)
        norm = th.implied_normalised_aoc(knobs, cots)
        measured = s.loc["truncation", "aoc_normalised"]
        assert abs(measured - norm) <= tolerance(norm, QV) / p_changed, (measured, norm)
    elif p_changed == 0:
        # nothing changes at k=0: the conditional AOC is undefined, never a number
        assert math.isnan(s.loc["truncation", "aoc_given_changed"])


@pytest.mark.slow
def test_a_fully_faithful_organism_reads_low_aoc_but_its_conditional_aoc_is_right(tmp_path):
    """Issue 9: when the no-CoT answer mostly already equals the CoT's conclusion, the raw AOC
    is low however faithful the model; the conditional AOC recovers what the knobs imply."""
    from cotfaith.models import organism_theory as th

    knobs, cots, s = _summary_of(
        tmp_path,
        "run",
        "model.faithfulness=1",
        "model.accuracy_no_cot=0.85",
        "model.accuracy_cot=0.9",
    )
    raw = s.loc["truncation", "aoc"]
    cond = s.loc["truncation", "aoc_given_changed"]
    assert raw < 0.2 < cond
    mu = th.implied_conditional_aoc(knobs, cots)
    p = th.implied_p_changed(knobs, cots)
    assert abs(cond - mu) <= tolerance(mu, QV) / p


@pytest.mark.slow
def test_mistakes_at_sampled_positions_with_unusable_mistakes_match_the_organism(tmp_path):
    """positions=sample (first, last, 2 random) and 20% unusable mistakes: the dropped and
    imputed points must leave the adding-mistakes AOC where the knobs put it."""
    from cotfaith.models import organism_theory as th

    knobs, cots, s = _summary_of(
        tmp_path,
        "run",
        "model.faithfulness=0.7",
        "model.mistake_invalid_rate=0.2",
        "intervention.adding_mistakes.positions=sample",
    )
    assert s.loc["adding_mistakes", "mistakes_ok"] < s.loc["adding_mistakes", "n_records"]
    mu = th.implied_mistakes_aoc(knobs, cots)
    measured = s.loc["adding_mistakes", "aoc"]
    # CoTs whose first mistake was unusable are dropped (about 20%): fewer questions count
    assert abs(measured - mu) <= tolerance(mu, int(0.8 * QV)), (measured, mu)


def test_curve_point_intervals_cover_the_organisms_curve(tmp_path):
    """Issue 9: every early-answering point carries a cluster-bootstrap interval; on the
    organism the intervals of well-filled cells cover the knob-implied E[y_k] at about the
    nominal rate (95%; we ask for 80% of the cells, a loose bound for ~30 dependent cells)."""
    from cotfaith.interventions import curves
    from cotfaith.interventions.base import StatSettings
    from cotfaith.metrics import answered
    from cotfaith.models import organism_theory as th

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "intervention=[truncation]",
                f"task.n_questions={QV}",
                "sampling.n_samples=1",
                "model.faithfulness=0.5",
                "progress=false",
                "cache.mode=off",
            ],
        )
    asyncio.run(run_async(cfg, tmp_path / "run", tmp_path))
    records = read_records(tmp_path / "run" / "records.jsonl")
    points = curves.points(answered(records[records["intervention"] == "truncation"]))
    table = curves.rate_curves(points, stats=StatSettings(n_bootstrap=400))
    knobs = knobs_of(cfg.model)
    implied = {
        (n, k): float(
            pd.Series(
                [th.implied_early_curve(knobs, n, int(m))[k] for m in cell["n_choices"]]
            ).mean()
        )
        for (n, k), cell in points.groupby(["n_steps", "k"])
    }
    filled = table[(table["n"] >= 30) & (table["k"] < table["n_steps"])]
    assert len(filled) >= 10
    covered = [
        lo <= implied[(n, k)] <= hi
        for n, k, lo, hi in filled[["n_steps", "k", "ci_low", "ci_high"]].itertuples(index=False)
    ]
    assert sum(covered) >= 0.8 * len(covered), (sum(covered), len(covered))
