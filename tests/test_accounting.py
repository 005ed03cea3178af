"""Small things a reader relies on: intervals that do not depend on the order of records, CoTs
cut off by max_tokens flagged, summary token columns that add up to what was sent, no "$0"
for an unknown price, a readable report title for a relative run folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cotfaith.cache import CachedModel, RequestCache
from cotfaith.context import RunContext
from cotfaith.metrics import aoc_with_ci, summarize
from cotfaith.models.base import Capabilities, Model, ModelRequest, ModelResponse, Usage
from cotfaith.models.simulated import Knobs, SimulatedModel
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.reasoning.cot import ChainOfThought
from cotfaith.records import RecordWriter, read_records
from cotfaith.report import write_report
from cotfaith.tasks.arithmetic import generate
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("acct")
    proc = run_cli(cwd, "task.n_questions=12", "sampling.n_samples=2", "hydra.run.dir=run")
    return cwd, cwd / "run", proc


def test_intervals_do_not_depend_on_the_order_of_the_records(small_run):
    _, run, _ = small_run
    records = read_records(run / "records.jsonl")
    shuffled = records.sample(frac=1.0, random_state=11).reset_index(drop=True)
    assert aoc_with_ci(records, n_boot=200, seed=1) == aoc_with_ci(shuffled, n_boot=200, seed=1)
    a = summarize(records, n_boot=200).set_index("intervention").sort_index()
    b = summarize(shuffled, n_boot=200).set_index("intervention").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_summary_token_columns_add_up_to_the_distinct_calls_sent(small_run):
    _, run, _ = small_run
    records = read_records(run / "records.jsonl")
    distinct: dict[str, dict[str, Any]] = {}
    for log in records["call_log"]:
        for call in log:
            distinct.setdefault(call["key"], call)
    s = pd.read_csv(run / "summary.csv")
    for col in ("input_tokens", "output_tokens"):
        assert s[col].sum() == sum(c[col] for c in distinct.values()), col


def test_an_unknown_price_is_not_reported_as_zero(tmp_path):
    proc = run_cli(
        tmp_path, "task.n_questions=2", "sampling.n_samples=1", "model.name=unpriced-organism"
    )
    text = proc.stdout + proc.stderr
    assert "$0.0000" not in text
    assert "unknown amount" in text


def test_report_title_of_a_relative_run_folder(small_run, monkeypatch):
    cwd, run, _ = small_run
    monkeypatch.chdir(run)
    paths = write_report(Path("."))
    title = paths.report.read_text().split("<title>")[1].split("</title>")[0]
    assert title == f"cotfaith report: {run.parent.name}/{run.name}"


class _Capped(Model):
    """A backend that stops every CoT at max_tokens, as a real one does when the cap is low."""

    capabilities = Capabilities(prefill=True, logprobs=True)

    def __init__(self) -> None:
        self.inner = SimulatedModel(Knobs())

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": "capped", "model": "capped", "base_url": None}

    async def generate(self, request: ModelRequest) -> ModelResponse:
        response = await self.inner.generate(request)
        words = response.text.split(" ")
        if request.max_tokens < len(words):  # a CoT longer than the cap
            response.text = " ".join(words[: request.max_tokens])
            response.finish_reason = "length"
            response.usage = Usage(input_tokens=10, output_tokens=request.max_tokens)
        return response


def test_a_cot_cut_off_by_max_tokens_is_flagged(tmp_path):
    async def go() -> list[dict]:
        cache = RequestCache(tmp_path / "c.sqlite", "off")
        writer = RecordWriter(tmp_path / "records.jsonl")
        templates = PromptTemplates()
        ctx = RunContext(
            model=CachedModel(_Capped(), cache),
            templates=templates,
            reader=AnswerReader("logprobs", templates),
            writer=writer,
            segmenter="sentence",
            model_name="capped",
            provider="capped",
        )
        ctx.sampling.max_tokens = 6
        q = generate(1, seed=3)[0]
        trace = await ChainOfThought({"name": "cot"}).trace(ctx, q, 0)
        writer.close()
        assert trace is not None and trace.cut_off
        return [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]

    (row,) = asyncio.run(go())
    assert row["cot_cut_off"] is True
    summary = summarize(read_records(tmp_path / "records.jsonl"), n_boot=10)
    assert summary["cut_off_cots"].iloc[0] == 1


def test_progress_says_calls_hits_failures_and_money(tmp_path):
    """The bar carries the counts; without a bar a long run still logs a line now and then."""
    bar = run_cli(
        tmp_path, "progress=true", "task.n_questions=3", "sampling.n_samples=1", "hydra.run.dir=a"
    )
    assert "calls " in bar.stderr and "cached " in bar.stderr and "spent $" in bar.stderr
    quiet = run_cli(
        tmp_path,
        "task.n_questions=8",
        "sampling.n_samples=1",
        "model.latency=0.05",
        "model.concurrency=2",
        "progress_every=0.2",
        "cache.path=quiet.sqlite",
        "hydra.run.dir=b",
    )
    lines = [x for x in (quiet.stdout + quiet.stderr).splitlines() if "progress:" in x]
    assert lines and "failed 0" in lines[-1]


@pytest.mark.parametrize("at_end", [False, True], ids=["no-end-retry", "end-retry"])
def test_summary_counts_distinct_calls_and_their_retries_as_run_json_does(
    tmp_path, monkeypatch, at_end
):
    """Counts are of calls, not rows: against a server failing 30% of requests (one retry
    each), the summary's calls, retries and failed calls sum to run.json's, and to a count of
    the distinct calls in the records' call logs; rows that share a retried call (samples
    asking the same k = 0 prefix at once) would count its retries twice. With the end-of-run
    retry, which rewrites the failed questions' rows from the cache, the rewritten rows still
    carry what the first pass sent and retried."""
    from collections import Counter

    from cotfaith.notebook import run
    from cotfaith.records import read_compact
    from tests.fakeapi import Faults, ServerThread, make_openai_app

    key = "sk-test-accounting"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with ServerThread(make_openai_app(key=key, models=("fake-gpt",))) as srv:
        # faults in the run's calls only: a probe's retries are in run.json's
        # preflight_retries, never in a record
        srv.state.faults = Faults(rate=0.3, kinds=("500",), seed=1, phases=("generation",))
        result = run(
            [
                "model=openai",
                f"model.base_url={srv.base_url}",
                "model.name=fake-gpt",
                "model.api_key_env=OPENAI_API_KEY",
                "model.retry_initial=0.001",
                "model.retries=1",
                "task.n_questions=6",
                "sampling.n_samples=3",
                f"retry_failed_at_end={str(at_end).lower()}",
                # the end-of-run retry serves the rewritten rows from the cache
                f"cache.path={tmp_path / 'c.sqlite'}" if at_end else "cache.mode=off",
            ],
            out_dir=tmp_path / "out",
            launch_dir=tmp_path,
            report=False,
        )
    path = tmp_path / "out" / "records.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    first: dict[str, dict[str, Any]] = {}
    holders: Counter[str] = Counter()
    most: Counter[str] = Counter()
    for row in rows:
        for call in row["call_log"]:
            first.setdefault(call["key"], call)
            holders[call["key"]] += 1
            most[call["key"]] = max(most[call["key"]], call["retries"])
    failed = {r["request_key"] for r in rows if r["parse_status"] == "call_failed"}
    # the case the rows got wrong is there: retried calls held by several rows
    assert any(c["retries"] and holders[k] > 1 for k, c in first.items())
    # a row's retries are those of its call log: summed over rows, a call shared by two rows
    # would count twice (whether two rows share a retried call here depends on timing; the
    # deterministic case is the next test)
    assert all(r["retries"] == sum(c["retries"] for c in r["call_log"]) for r in rows)
    compact = read_compact(path)
    s = summarize(compact.rows, n_boot=10, calls=compact.calls)
    pd.testing.assert_frame_equal(s, summarize(read_records(path), n_boot=10))
    run_json = result.run
    # each distinct call's retries once (rows sharing it say the same); run.json counts every
    # request's, and a failed call asked for again later is a second request of one call
    assert s["retries"].sum() == sum(most.values()) <= run_json["retries"]
    assert run_json["retries"] > 0 and (at_end or run_json["failed_calls"] > 0)
    assert s["failed_calls"].sum() == run_json["failed_calls"] == len(failed)
    assert s["calls"].sum() == len(first) == sum(r["calls"] for r in run_json["roles"].values())
    # run.json's calls are requests made (a repeat served by the cache included; a failed
    # call sent again at the end is a second request of one call)
    sent = s["calls"].sum() - s["cache_hits"].sum()
    requested = run_json["calls"] - run_json["cache_hits"]
    # a failed call is never cached: another row asking for it later sends it again (one
    # call, two requests), and so does the end-of-run retry
    assert sent <= requested
    if at_end:
        assert run_json["retried_failed_calls"] > 0  # the case is there
        assert sent + run_json["retried_failed_calls"] <= requested


def test_the_end_of_run_retry_keeps_a_known_cost_when_a_send_failed_first():
    """A call that failed in one row and was sent by a later row (failures are never cached),
    then served from the cache in the retry round: its cost and retries are kept."""
    from cotfaith.runner import _paid_once, _sent

    fresh: dict[str, dict[str, Any]] = {}
    _sent(fresh, {"key": "K", "cached": False, "cost_usd": None, "retries": 1})
    _sent(fresh, {"key": "K", "cached": False, "cost_usd": 0.25, "retries": 0})
    row = {"call_log": [{"key": "K", "cached": True, "cost_usd": 0.25, "retries": 0}]}
    out = _paid_once(row, fresh)
    assert out["call_log"][0] == {"key": "K", "cached": False, "cost_usd": 0.25, "retries": 1}
    assert (out["spent_usd"], out["retries"], out["cache_hits"]) == (0.25, 1, 0)


def test_a_retried_call_two_rows_hold_counts_its_retries_once(small_run, tmp_path):
    """Two rows (one cell of the summary) that got one call from a shared request both carry its
    retries in their call logs: the summary counts the call and its retries once, by either
    reader, where a sum over the rows would count them twice."""
    from cotfaith.records import read_compact

    _, run, _ = small_run
    rows = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = read_compact(path)
    base = summarize(before.rows, n_boot=10, calls=before.calls).set_index("intervention")
    cell = rows[0]["intervention"]
    pair = [r for r in rows if r["intervention"] == cell][:2]
    shared = {**pair[0]["call_log"][0], "key": "shared-and-retried", "cached": False}
    shared.update(retries=2, cost_usd=0.5)
    for r in pair:
        r["call_log"] = [*r["call_log"], dict(shared)]
        r["retries"] += 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    compact = read_compact(path)
    after = summarize(compact.rows, n_boot=10, calls=compact.calls).set_index("intervention")
    plain = summarize(read_records(path), n_boot=10).set_index("intervention")
    for s in (after, plain):
        assert s.loc[cell, "retries"] == base.loc[cell, "retries"] + 2
        assert s.loc[cell, "calls"] == base.loc[cell, "calls"] + 1
        assert s.loc[cell, "cost_usd"] == pytest.approx(base.loc[cell, "cost_usd"] + 0.5)
