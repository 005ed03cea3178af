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
SCHEMA_VERSION = 2
"""1: before per-intervention payloads and roles; 2: `payload`, `method`, `letter_mass`,
`cot_cut_off`, `subtask`, and a `role` in every call_log entry."""
CALL_FAILED = "call_failed"
"""parse_status of a row whose model call failed for good (not a model behaviour)."""
NOT_ASKED = "not_asked"
"""parse_status of a row whose answer was not asked (an invalid mistake, say): counted by its
intervention, never an answer."""


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
    method: str = "cot"
    """The reasoning method that produced the trace (cot; later decompositions)."""
    overrides: str = ""
    """The job's command-line overrides (in a sweep: which job the row belongs to)."""
    backend_key: str = ""
    """Short hash of the model under test's identity (provider, model, base URL, settings that
    change outputs): two runs of one model name on different backends never pool."""
    subtask: str | None = None
    """MMLU subject, BBH task... where the task has them."""
    n_steps: int | None = None
    k: int | None = None
    """The x of a curve point in steps: steps kept (truncation), steps before the mistake
    (adding_mistakes), steps paraphrased (paraphrase), filler tokens (filler_tokens)."""
    fraction: float | None = None
    """k / n_steps where that is the x axis."""
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
    letter_mass: float | None = None
    """Logprob read-out: probability the first answer token put on the choice letters."""
    cot_cut_off: bool | None = None
    """Reference rows: the CoT stopped at max_tokens (it may lack its conclusion)."""
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
    """One entry per model call behind the row: key, role, cached, tokens, cost."""
    payload: dict[str, Any] = field(default_factory=dict)
    """What is particular to the intervention (its typed payload, as a mapping)."""
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

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
        self._roles: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, str]] = set()
        self.failed_keys: set[str] = set()
        """Distinct failed calls (a failed call shared by several rows counts once)."""
        self.failed_questions: dict[tuple[str, str], set[str]] = {}
        """(task, question_id) -> the failed calls in its rows: what the runner's end-of-run
        retry runs again."""
        self.answers = 0
        """Rows with an answer read (status ok)."""

    def write(self, record: Record) -> None:
        self._fh.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.count += 1
        self.failed += record.parse_status == CALL_FAILED
        self.answers += record.parse_status == "ok"
        if record.parse_status == CALL_FAILED:
            self.failed_keys.add(record.request_key)
            self.failed_questions.setdefault((record.task, record.question_id), set()).add(
                record.request_key
            )
        for call in record.call_log:
            self._tally(call)

    def _tally(self, call: dict[str, Any]) -> None:
        # distinct calls per role: a call shared by several rows counts once
        role = call.get("role") or "model"
        if (role, call["key"]) in self._seen:
            return
        self._seen.add((role, call["key"]))
        t = self._roles.setdefault(
            role,
            {"calls": 0, "cache_hits": 0, "input_tokens": 0, "output_tokens": 0, "spent_usd": 0.0},
        )
        t["calls"] += 1
        t["cache_hits"] += bool(call.get("cached"))
        t["input_tokens"] += call.get("input_tokens") or 0
        t["output_tokens"] += call.get("output_tokens") or 0
        if not call.get("cached"):
            t["spent_usd"] += call.get("cost_usd") or 0.0

    def role_totals(self) -> dict[str, dict[str, Any]]:
        """Distinct calls, tokens and spending per role, over the rows written."""
        return {role: dict(t) for role, t in self._roles.items()}

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TraceWriter:
    """traces.jsonl: every reasoning trace, its steps and its answer, as it is made."""

    def __init__(self, path: Path):
        self._fh: TextIO = Path(path).open("w", encoding="utf-8")

    def write(self, trace: Any) -> None:
        q = trace.question
        row = {
            "task": q.task,
            "question_id": q.id,
            "sample": trace.sample,
            "method": trace.method,
            "question": q.text,
            "choices": list(q.choices),
            "context": q.context,
            "demos": q.demos,
            "subtask": q.subtask,
            "gold": q.answer,
            "cot": trace.cot,
            "steps": [st.text for st in trace.steps],
            "answer": trace.reference.letter,
            "tokens": trace.tokens,
            "cut_off": trace.cut_off,
        }
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


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
