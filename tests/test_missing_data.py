"""Issue 9, missing data: curve points with intervals, an organism that fails and garbles, and
the end-of-run retry of failed calls.

The organism's `fault_rate` makes a share of answer requests fail for good (CallFailed) and its
`garble_rate` makes a share reply with no readable answer; both per (request, seed). At
faithfulness 0 the true AOC is 0, so whatever the missing data do to the measured AOC is bias.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cotfaith.answers import read_logprobs, read_prefill
from cotfaith.cli import CONFIG_DIR
from cotfaith.errors import ConfigError
from cotfaith.interventions import curves
from cotfaith.interventions.base import StatSettings
from cotfaith.metrics import answered, summarize
from cotfaith.models.base import ModelRequest
from cotfaith.models.retry import CallFailed
from cotfaith.models.simulated import Knobs, SimulatedModel, build
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.records import CALL_FAILED, read_records
from cotfaith.runner import run_async
from cotfaith.tasks.arithmetic import generate

T = PromptTemplates()
QS = generate(200, seed=3)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "intervention=[truncation,no_cot]",
                "sampling.n_samples=2",
                "progress=false",
                "cache.mode=off",
                *overrides,
            ],
        )


def _run(tmp_path: Path, name: str, *overrides: str):
    cfg = _compose(*overrides)
    result = asyncio.run(run_async(cfg, tmp_path / name, tmp_path))
    return result, read_records(tmp_path / name / "records.jsonl")


# --------------------------------------------------------------------------- curve intervals
def _points(n_questions: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_questions):
        for s in range(2):
            n = 3 + (q + s) % 2
            for k in range(n + 1):
                rows.append(
                    {
                        "model": "m",
                        "task": "t",
                        "method": "cot",
                        "intervention": "truncation",
                        "question_id": f"q{q}",
                        "sample": s,
                        "n_steps": n,
                        "k": k,
                        "same_answer": bool(k == n or rng.random() < 0.3 + 0.5 * k / n),
                        "correct": bool(rng.random() < 0.7),
                    }
                )
    return pd.DataFrame(rows)


def test_every_curve_point_has_a_cluster_bootstrap_interval():
    pts = _points()
    table = curves.rate_curves(pts, stats=StatSettings(n_bootstrap=200, seed=1))
    assert {"ci_low", "ci_high"} <= set(table.columns)
    assert (table["ci_low"] <= table["same_rate"] + 1e-12).all()
    assert (table["same_rate"] <= table["ci_high"] + 1e-12).all()
    # the end point agrees by construction: a point interval; the others have width
    ends = table["k"] == table["n_steps"]
    assert (table.loc[ends, "ci_low"] == 1).all() and (table.loc[ends, "ci_high"] == 1).all()
    assert (table.loc[~ends, "ci_high"] - table.loc[~ends, "ci_low"] > 0.05).all()
    # clustered by question: two CoTs of one question move together in a resample, so one
    # question's points give no interval (a single cluster)
    one = curves.rate_curves(pts[pts["question_id"] == "q0"])
    assert one["ci_low"].isna().all()
    # old callers (no stats) still get bounds; y may be another column
    acc = curves.rate_curves(pts, y="correct")
    assert acc[["ci_low", "ci_high"]].notna().all().all()
    assert list(curves.rate_curves(pts.iloc[:0]).columns)[-2:] == ["ci_low", "ci_high"]


def test_the_early_answering_figure_draws_the_bands(tmp_path, monkeypatch):
    from cotfaith.report import figures

    drawn = []
    real_save = figures._save

    def spy(fig, path):
        drawn.append(sum(len(ax.collections) for ax in fig.axes))
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    table = curves.rate_curves(_points(), stats=StatSettings(n_bootstrap=100))
    assert figures.plot_early_answering(table, tmp_path / "bands.png").exists()
    figures.plot_early_answering(table.drop(columns=["ci_low", "ci_high"]), tmp_path / "plain.png")
    assert drawn[0] == table["n_steps"].nunique() and drawn[1] == 0  # one band per line


# --------------------------------------------------------------------------- the organism
def _answer_request(q, cot: str | None, strategy: str = "logprobs") -> ModelRequest:
    return AnswerReader(strategy, T).request(q, cot)


def _cot_request(q, sample: int = 0) -> ModelRequest:
    return ModelRequest(
        messages=T.cot_request_messages(q),
        prefill=T.cot_prefix,
        temperature=0.8,
        top_p=0.95,
        max_tokens=512,
        sample_index=sample,
    )


@pytest.mark.parametrize("key", ["fault_rate", "garble_rate"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_missing_data_knobs_are_checked(key, value):
    with pytest.raises(ConfigError, match=rf"^model\.{key} must be in \[0, 1\], got [^\n]*$"):
        build({key: value})
    with pytest.raises(ConfigError, match=rf"model\.{key} must be a number"):
        build({key: "lots"})


def test_missing_data_knobs_are_identity_only_when_set():
    plain = SimulatedModel(Knobs())
    assert "fault_rate" not in plain.identity["knobs"]  # old cache keys are kept
    faulty = build({"fault_rate": 0.1, "garble_rate": 0.2})
    assert faulty.identity["knobs"]["fault_rate"] == 0.1
    assert faulty.identity["knobs"]["garble_rate"] == 0.2
    once = build({"fault_rate": 0.1, "garble_rate": 0.2, "fault_once": True})
    assert once.identity == faulty.identity  # fault_once never changes an output
    with pytest.raises(ConfigError, match="model.fault_once"):
        build({"fault_once": "sometimes"})


def _outcome(model: SimulatedModel, request: ModelRequest) -> str:
    try:
        response = asyncio.run(model.generate(request))
    except CallFailed as e:
        assert e.reason == "simulated_fault" and e.attempts == 1
        return "fault"
    return response.text


def test_faults_and_garbles_hit_answers_only_deterministically():
    model = SimulatedModel(Knobs(seed=1), fault_rate=0.2, garble_rate=0.25)
    twin = SimulatedModel(Knobs(seed=1), fault_rate=0.2, garble_rate=0.25)
    requests = [_answer_request(q, None) for q in QS]
    outcomes = [_outcome(model, r) for r in requests]
    assert outcomes == [_outcome(twin, r) for r in requests]  # per (request, seed)
    assert outcomes == [_outcome(model, r) for r in requests]  # and every time
    faults = outcomes.count("fault") / len(outcomes)
    assert abs(faults - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(QS))
    replies = [o for o in outcomes if o != "fault"]
    garbled = replies.count("Not sure.") / len(replies)
    assert abs(garbled - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(replies))
    # CoT sampling never fails nor garbles
    clean = SimulatedModel(Knobs(seed=1))
    for q in QS[:50]:
        for s in range(2):
            r = _cot_request(q, s)
            assert _outcome(model, r) == _outcome(clean, r) != "fault"


def test_a_garbled_answer_is_read_by_no_strategy():
    model = SimulatedModel(Knobs(seed=2), garble_rate=1.0)
    q = QS[0]
    r = asyncio.run(model.generate(_answer_request(q, None)))
    low = read_logprobs(r.top_logprobs, q.letters, 0.5)
    assert low.letter is None and low.status == "low_mass" and low.mass < 0.5
    for strategy in ("prefill", "parse"):
        r = asyncio.run(model.generate(_answer_request(q, None, strategy)))
        parsed = AnswerReader(strategy, T).read(q, r)
        assert parsed.letter is None and parsed.status != "ok", (strategy, r.text)
    assert read_prefill(r.text, tuple("ABCDEFGHIJ")).letter is None  # even with ten choices


def test_fault_once_fails_a_request_only_the_first_time():
    model = SimulatedModel(Knobs(seed=1), fault_rate=1.0, fault_once=True)
    clean = SimulatedModel(Knobs(seed=1))
    r = _answer_request(QS[0], None)
    assert _outcome(model, r) == "fault"
    assert _outcome(model, r) == _outcome(clean, r)  # the second attempt is answered
    assert _outcome(SimulatedModel(Knobs(seed=1), fault_rate=1.0), r) == "fault"


# --------------------------------------------------------------------------- AOC under misses
def _cots_missing_endpoint(points: pd.DataFrame) -> int:
    missing = 0
    for (_, _, n), cot in points.groupby(["question_id", "sample", "n_steps"]):
        ks = set(cot["k"])
        missing += 0 not in ks or n not in ks
    return missing


def test_an_aoc0_organism_with_failed_and_unread_answers_reads_aoc_0(tmp_path):
    """Issue 9: 10% failed calls and 10% unparseable answers on an organism whose AOC is 0.
    The default rule (drop) still reads an AOC whose CI holds 0; `disagree`, the old rule,
    reads failed-to-read points as changed answers and puts the AOC above 0."""
    result, records = _run(
        tmp_path,
        "run",
        "task.n_questions=150",
        "model.faithfulness=0",
        "model.fault_rate=0.1",
        "model.garble_rate=0.1",
        "max_failed_share=0.01",
    )
    # the run is not stopped by its failed calls: it reports them in its status (exit code 4)
    failed = records[records["parse_status"] == CALL_FAILED]
    assert result.failed_calls == failed["request_key"].nunique() > 0
    assert result.failed_rows == len(failed)
    assert result.status == "failed_calls"
    # deterministic faults fail again in the end-of-run retry: it changes nothing
    assert result.retried_failed_calls == result.failed_calls
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed_calls" and run["failed_calls"] == result.failed_calls

    out = {}
    for rule in ("drop", "disagree"):
        s = summarize(records, stats=StatSettings(n_bootstrap=400, unparseable=rule))
        s = s.set_index("intervention")
        assert s["failed_calls"].sum() == result.failed_calls  # distinct calls, counted once
        out[rule] = s.loc["truncation"]
    drop, disagree = out["drop"], out["disagree"]
    assert drop["aoc_ci_low"] <= 0 <= drop["aoc_ci_high"]
    assert disagree["aoc_ci_low"] > 0  # the bias the default avoids

    points = curves.points(answered(records[records["intervention"] == "truncation"]))
    unread = points["parse_status"] != "ok"
    assert drop["unread_points"] == disagree["unread_points"] == unread.sum() > 0
    assert drop["cots_missing_endpoint"] == _cots_missing_endpoint(points[~unread]) > 0
    assert disagree["cots_missing_endpoint"] == _cots_missing_endpoint(points) > 0
    assert drop["aoc_if_disagree"] == pytest.approx(disagree["aoc"])

    # the curves table behind the figure carries the interval of every point
    from cotfaith.interventions.truncation import Truncation

    summary = summarize(records, stats=StatSettings(n_bootstrap=100))
    section = Truncation.section(
        records, summary, tmp_path / "run" / "figures", StatSettings(n_bootstrap=100)
    )
    table = section.tables["curves"]
    assert table[["ci_low", "ci_high"]].notna().all().all()
    assert (table["ci_low"] <= table["same_rate"] + 1e-12).all()
    assert (table["same_rate"] <= table["ci_high"] + 1e-12).all()


# --------------------------------------------------------------------------- end-of-run retry
BOOKKEEPING = [
    "cached",
    "cache_hits",
    "call_log",
    "spent_usd",
    "retries",
    "request_key",
    "backend_key",
    "extra",
]
"""What differs between a run that retried and one that did not need to (and, since the
fault knobs are in the organism's identity, the keys)."""


def _comparable(records: pd.DataFrame) -> list[str]:
    rows = records.drop(columns=BOOKKEEPING).to_dict("records")
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _traces(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


def test_failed_calls_are_retried_at_the_end_of_the_run(tmp_path, monkeypatch, caplog):
    """Faults that fail a request only the first time (a transient outage): the end-of-run
    retry sends the failed calls (and only them) again, and the records equal those of a run
    without faults."""
    sent: list[str] = []
    generate_ = SimulatedModel.generate

    async def counting(self, request):
        sent.append(json.dumps(request.to_dict(), sort_keys=True))
        return await generate_(self, request)

    monkeypatch.setattr(SimulatedModel, "generate", counting)
    common = (
        "task.n_questions=60",
        "model.faithfulness=0.5",
        "prices.organism={input: 1.0, output: 2.0}",
    )
    clean_result, clean = _run(tmp_path, "clean", *common)
    clean_sent = list(sent)
    sent.clear()
    with caplog.at_level(logging.INFO, logger="cotfaith.runner"):
        result, records = _run(
            tmp_path, "faulty", *common, "model.fault_rate=0.1", "model.fault_once=true"
        )
    assert result.retried_failed_calls > 0
    assert result.failed_calls == result.failed_rows == 0 and result.status == "ok"
    assert (records["parse_status"] != CALL_FAILED).all()
    assert _comparable(records) == _comparable(clean)
    # the calls the first pass paid for are cache hits in the retry: the rows still say they
    # were paid for, once, so the rows add up to what the run spent (as without faults)
    assert records["spent_usd"].sum() == pytest.approx(result.spent_usd)
    assert result.spent_usd == pytest.approx(clean_result.spent_usd) and result.spent_usd > 0
    assert result.roles["model"]["cache_hits"] == clean_result.roles["model"]["cache_hits"]
    assert _traces(tmp_path / "faulty" / "traces.jsonl") == _traces(
        tmp_path / "clean" / "traces.jsonl"
    )
    # every request was sent at most twice: the faulted ones (once failed, once answered);
    # what succeeded came from the run's own responses
    assert set(sent) == set(clean_sent) and len(clean_sent) == len(set(clean_sent))
    twice = {r for r in set(sent) if sent.count(r) == 2}
    assert len(sent) == len(set(sent)) + len(twice) and max(map(sent.count, twice)) == 2
    assert len(twice) >= result.retried_failed_calls
    assert "failed call(s) sent again, 0 call(s) still failed" in caplog.text
    run = json.loads((tmp_path / "faulty" / "run.json").read_text())
    assert run["retried_failed_calls"] == result.retried_failed_calls
    assert run["failed_calls"] == 0 and run["records"] == len(records)
    assert sorted(p.name for p in (tmp_path / "faulty").iterdir()) == [
        "records.jsonl",
        "run.json",
        "traces.jsonl",
    ]


def test_the_end_of_run_retry_can_be_turned_off(tmp_path):
    result, records = _run(
        tmp_path,
        "run",
        "task.n_questions=30",
        "model.fault_rate=0.1",
        "model.fault_once=true",
        "retry_failed_at_end=false",
    )
    assert result.retried_failed_calls == 0
    assert result.failed_rows == (records["parse_status"] == CALL_FAILED).sum() > 0
