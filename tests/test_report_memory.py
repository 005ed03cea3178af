"""The report's compact reader: the same rows, payload fields and calls as the full reader, in
a bounded amount of memory per record (benchmarks/report_memory.py measures the whole report
step's peak RSS; this checks the reader's Python allocations, so a return to one dict per row
fails here)."""

from __future__ import annotations

import importlib.util
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cotfaith.interventions.base import StatSettings, intervention_class, payload_column
from cotfaith.metrics import summarize
from cotfaith.records import (
    CALL_FAILED,
    PAYLOAD_PREFIX,
    CallLog,
    read_compact,
    read_records,
)

N = 4000
CHUNK = 500
BYTES_PER_RECORD = 1500
"""Bound on the compact reader's peak Python allocations per record. Measured on these files:
about 550 (350 kept: ~200 of columns, ~90 of call entries, the rest shared strings; plus one
chunk of Python values); the full reader peaks at ~7,900 (a dict per row and per call)."""


def _bench():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "report_memory.py"
    spec = importlib.util.spec_from_file_location("report_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """N records: a small organism run with every Lanham intervention, its lines replicated
    with distinct question ids and call keys (the benchmark's own generator)."""
    from cotfaith.notebook import run

    bench = _bench()
    folder = tmp_path_factory.mktemp("memory")
    base = folder / "base"
    run(
        [
            "task.n_questions=4",
            "sampling.n_samples=2",
            "intervention=[truncation,no_cot,adding_mistakes,paraphrase,filler_tokens]",
            # a share of answers fails for good: failed rows keep their request key
            "model.fault_rate=0.05",
            "retry_failed_at_end=false",
            f"cache.path={folder / 'cache.sqlite'}",
        ],
        out_dir=base,
        report=False,
    )
    return bench.replicate(base, N, folder) / "records.jsonl"


def test_the_compact_reader_keeps_what_the_full_reader_reads(big):
    full = read_records(big)
    compact = read_compact(big, chunk_rows=CHUNK)
    rows = compact.rows
    assert len(rows) == len(full) == N
    for name in rows.columns:
        if name.startswith(PAYLOAD_PREFIX):
            continue
        want = full[name]
        if name == "request_key":  # kept where a call failed, the only rows that read it
            want = want.where(full["parse_status"] == CALL_FAILED)
            assert want.notna().any()
        got = rows[name]
        if got.dtype.kind == "i":  # small counts in small integers
            assert got.astype("int64").equals(want), name
        else:
            assert got.dtype == want.dtype, name
            pd.testing.assert_series_equal(got, want, check_dtype=False, obj=name)
    # every payload field an intervention declares, in the form its analysis reads
    status = payload_column(rows, "mistake_status")
    assert (status == payload_column(full, "mistake_status")).sum() == (status == status).sum()
    assert status.eq("ok").any()
    flag = payload_column(rows, "continuation", flag=True)
    assert flag.dtype == bool and flag.any() and not flag.all()
    assert flag.equals(payload_column(full, "continuation", flag=True))
    declared = {k for name in set(full["intervention"]) for k in _fields(name)}
    assert {c[len(PAYLOAD_PREFIX) :] for c in rows if c.startswith(PAYLOAD_PREFIX)} == declared
    # the calls, entry by entry
    calls = CallLog.from_frame(full)
    for field in ("row", "key", "role", "cached", "cost_usd"):
        assert np.array_equal(getattr(calls, field), getattr(compact.calls, field), equal_nan=True)
    for field, values in calls.counts.items():
        assert np.array_equal(values, compact.calls.counts[field]), field
    assert len(calls) == sum(len(log) for log in full["call_log"])
    stats = StatSettings(n_bootstrap=20)
    pd.testing.assert_frame_equal(
        summarize(rows, stats=stats, calls=compact.calls), summarize(full, stats=stats)
    )


def _fields(intervention: str) -> set[str]:
    cls = intervention_class(intervention)
    return set(getattr(cls, "payload_fields", {}))


def test_the_compact_reader_stays_within_its_memory_per_record(big):
    read_compact(big, chunk_rows=CHUNK)  # imports and the registry, outside the measure
    tracemalloc.start()
    try:
        compact = read_compact(big, chunk_rows=CHUNK)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(compact.rows) == N
    assert peak / N < BYTES_PER_RECORD, f"{peak / N:.0f} bytes per record"
