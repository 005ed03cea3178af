"""Tidy per-sample records: one row per (task, question, sample, intervention, condition point).

Written append-only to records.jsonl as they are produced and flushed line by line, so a crash
loses nothing that was paid for. Metrics, figures and the report read only these rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

# Interventions' reference condition: the unmodified CoT and the answer read after it.
REFERENCE = "cot"
CALL_FAILED = "call_failed"
"""parse_status of a row whose model call failed for good (not a model behaviour)."""


@dataclass
class Record:
    task: str
    question_id: str
    intervention: str
    """`cot` (reference: complete CoT), `truncation`, `no_cot`, ..."""
    condition: str
    """Human-readable condition point, e.g. `k=3/7`, `full`, `none`."""
    sample: int | None
    """CoT sample index; None for conditions without a CoT (no_cot)."""
    model: str
    provider: str
    gold: str
    n_choices: int
    answer: str | None
    """Choice letter read out, or None when unparseable."""
    parse_status: str
    """`ok`, or what went wrong (`unparseable`, `empty`, ...); never counted as agreement."""
    correct: bool
    n_steps: int | None = None
    k: int | None = None
    fraction: float | None = None
    original_answer: str | None = None
    """Answer after the complete, unmodified CoT of this sample (the reference)."""
    same_answer: bool | None = None
    """answer == original_answer; False when either is unparseable; None without a reference."""
    answer_strategy: str = ""
    continuation_strategy: str | None = None
    """How the backend continues a prefilled assistant turn: prefill | completion | none."""
    cot_prompt: str | None = None
    """How the CoT was asked for: `prefill` ("Let's think step by step:") or `instructed`."""
    segmenter: str | None = None
    answer_probs: dict[str, float] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    """Input tokens the provider served from its prompt cache (billed lower)."""
    reasoning_tokens: int = 0
    """Hidden reasoning tokens, where the provider reports them (part of output_tokens)."""
    cost_usd: float | None = None
    """What the calls behind this row cost (a call shared with other rows counts in each)."""
    spent_usd: float | None = None
    """What this run paid for this row's calls (0 when all came from the cache); summing it
    over a run's rows gives exactly what the run spent."""
    retries: int = 0
    """Failed attempts retried before the calls behind this row succeeded (this run)."""
    calls: int = 1
    """Model calls behind this row (the answer, plus e.g. the CoT sample for `cot` rows)."""
    cache_hits: int = 0
    """How many of those calls were served from the cache."""
    cached: bool = False
    """All of them were."""
    request_key: str = ""
    call_log: list[dict[str, Any]] = field(default_factory=list)
    """One entry per model call behind the row: key, cached, tokens, cost."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def record_id(self) -> tuple:
        return (self.task, self.question_id, self.sample, self.intervention, self.condition)


class RecordWriter:
    """Appends records as JSON lines, flushing each so a killed run keeps every finished row."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A rerun into the same folder rebuilds the file from the cache rather than appending
        # duplicates.
        self._fh: TextIO = self.path.open("w", encoding="utf-8")
        self.count = 0
        self.failed = 0
        """Rows whose model call failed for good."""

    def write(self, record: Record) -> None:
        self._fh.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.count += 1
        self.failed += record.parse_status == CALL_FAILED

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> pd.DataFrame:
    """Load records.jsonl; a torn last line (killed mid-write) is skipped, other bad lines raise."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) and not line.endswith("\n"):
                break  # the write that was cut off by a kill
            raise ValueError(f"{path}:{i}: not a JSON record ({e.msg})") from e
    columns = list(Record.__dataclass_fields__)
    return pd.DataFrame(rows, columns=columns)
