"""Tidy per-sample records: one row per (task, question, sample, intervention, condition point).

Written append-only to records.jsonl as they are produced and flushed line by line, so a crash
loses nothing that was paid for. Metrics, figures and the report read only these rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO

import numpy as np
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
    """Failed attempts retried before the calls behind this row succeeded (this run). A call
    shared with other rows counts in each of them: the summary counts each call once, from
    the `retries` of its call_log entry."""
    calls: int = 1
    """Model calls behind this row (the answer, plus e.g. the CoT sample for `cot` rows); a
    shared call counts in each row (the summary's `calls` are distinct calls)."""
    cache_hits: int = 0
    """How many of those calls were served from the cache."""
    cached: bool = False
    """All of them were."""
    request_key: str = ""
    call_log: list[dict[str, Any]] = field(default_factory=list)
    """One entry per model call behind the row: key, role, cached, tokens, cost, retries."""
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


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every line of records.jsonl, read one line at a time; a torn
    last line (killed mid-write: no newline) is skipped, any other bad line raises naming
    `path:line`."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):
                    return  # the write that was cut off by a kill (only the last line lacks it)
                raise ValueError(f"{path}:{i}: not a JSON record ({e.msg})") from e
            yield i, row


def read_records(path: Path) -> pd.DataFrame:
    """Every field of every record (call logs, payloads, answer probabilities included): what
    a person exploring a run wants; about 2 KB of Python objects per record. The report reads
    `read_compact` instead."""
    rows = [row for _, row in iter_records(path)]
    columns = list(Record.__dataclass_fields__)
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- compact reading
# What the summary, the sections and the report read, and nothing else: about 10x less memory
# than `read_records` (no call logs, payloads or answer probabilities as Python objects).
TEXT_COLUMNS = (
    "model",
    "task",
    "method",
    "intervention",
    "question_id",
    "subtask",
    "gold",
    "answer",
    "original_answer",
    "parse_status",
    "answer_strategy",
    "continuation_strategy",
    "segmenter",
    "overrides",
    "backend_key",
    "request_key",
)
"""Repeated strings: each distinct value is held once (interned), a row holds a reference.
`request_key` is kept on failed rows only (the summary counts failed calls by it)."""
NUMBER_COLUMNS = (
    "sample",
    "n_steps",
    "k",
    "n_choices",
    "fraction",
    "letter_mass",
    "calls",
    "cache_hits",
    "retries",
)
FLAG_COLUMNS = ("correct", "same_answer", "cot_cut_off")
PAYLOAD_PREFIX = "payload."
"""Payload fields an intervention declares (`Intervention.payload_fields`) become columns
`payload.<key>`: `text` (a repeated string), `flag` (whether it is set) or `number`."""
CHUNK_ROWS = 50_000
"""Rows parsed into Python values before they are packed into arrays."""

_SAMPLE = {type(None): None, str: "x", int: 1, float: 1.5, bool: True}
_SMALL_COUNTS = ("n_choices", "calls", "cache_hits", "retries")
"""Counts only ever summed or read as int: packed in the smallest integer type that holds
them (everything else keeps the dtype `read_records` gives it)."""


def _dtype_of(types: set[type]) -> Any:
    """The dtype pandas infers for a column holding values of these types (what
    `read_records` gives), from one value of each type."""
    samples = [_SAMPLE.get(t, object()) for t in sorted(types, key=lambda t: t.__name__)]
    return pd.DataFrame({"c": samples})["c"].dtype if samples else np.dtype(object)


class _Column:
    """One column, packed chunk by chunk: numbers into float64 (NaN for None), anything else
    into object arrays of shared values; the dtype is decided at the end, as pandas would
    infer it from the whole column."""

    __slots__ = ("numeric", "chunks", "types")

    def __init__(self, numeric: bool):
        self.numeric = numeric
        self.chunks: list[np.ndarray] = []
        self.types: set[type] = set()

    def add(self, values: Sequence[Any]) -> None:
        types = set(map(type, values))
        self.types |= types
        if self.numeric and types <= {type(None), int, float}:
            chunk = np.fromiter((np.nan if v is None else v for v in values), float, len(values))
        else:
            chunk = np.empty(len(values), dtype=object)
            chunk[:] = values
        self.chunks.append(chunk)

    def finish(self, name: str) -> pd.Series:
        dtype = _dtype_of(self.types)
        chunks, self.chunks = self.chunks, []
        if all(c.dtype == float for c in chunks) and dtype.kind in "fiu":
            values = np.concatenate(chunks) if chunks else np.zeros(0)
            if dtype.kind == "f":
                return pd.Series(values)
            if name in _SMALL_COUNTS and len(values):
                lo, hi = int(values.min()), int(values.max())
                dtype = next(
                    t
                    for t in (np.int8, np.int16, np.int32, np.int64)
                    if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max
                )
            return pd.Series(values.astype(dtype))
        values = (
            np.concatenate(
                [
                    c if c.dtype == object else np.array([None if v != v else v for v in c], object)
                    for c in chunks
                ]
            )
            if chunks
            else np.zeros(0, dtype=object)
        )
        if dtype.kind == "b":
            return pd.Series(values.astype(bool))
        return pd.Series(values, dtype=dtype)


def _count(value: Any) -> int:
    """A row's count as an int (0 for None or NaN)."""
    return int(value) if value is not None and value == value else 0


def _key64(key: Any) -> int:
    """A call key as 64 bits (Python's string hash: fast and cached on the string; it differs
    between processes, which is fine for counting within one). Two distinct calls share 64
    bits with odds ~n^2 / 2^65: 1e-7 for three million calls."""
    return hash("" if key is None else str(key)) & 0xFFFFFFFFFFFFFFFF


CALL_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "retries",
)
# one call_log entry as packed: position of the record, key, role, cached, cost, CALL_FIELDS
_ENTRY_DTYPES = (np.int64, np.uint64, np.int16, np.bool_, np.float64) + (np.int32,) * 5


@dataclass
class CallLog:
    """Every call_log entry of the rows read, one per (row, call), as flat arrays (about 43
    bytes an entry): what the summary needs to count each distinct call once (its key as 64
    bits, role, cached, tokens, cost, retries) without a Python dict per call. `row` is the
    record's position."""

    row: np.ndarray
    key: np.ndarray
    role: np.ndarray
    """Index into `roles`."""
    roles: list[str]
    cached: np.ndarray
    cost_usd: np.ndarray
    """NaN where the call has no price."""
    counts: dict[str, np.ndarray]
    """CALL_FIELDS: tokens and retries of each entry (int32: per call)."""

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def from_frame(cls, records: pd.DataFrame) -> CallLog:
        """From the `call_log` column of full records (rows by position)."""
        builder = _CallBuilder()
        if "call_log" in records:
            retries = records["retries"] if "retries" in records else [0] * len(records)
            for i, (log, r) in enumerate(zip(records["call_log"], retries, strict=True)):
                builder.add(i, log, r)
        return builder.finish()


class _CallBuilder:
    def __init__(self, chunk: int = CHUNK_ROWS) -> None:
        self.chunk = chunk
        self.roles: dict[str, int] = {}
        self.buf: list[tuple] = []
        self.chunks: list[list[np.ndarray]] = [[] for _ in _ENTRY_DTYPES]

    def add(self, row: int, log: Any, row_retries: Any) -> None:
        if not isinstance(log, list):
            return
        for j, c in enumerate(log):
            role = c.get("role") or "model"
            r = c.get("retries")
            if r is None:
                # records written before calls carried their retries: the row's go to its
                # first call (the answer: what failed and was retried in almost every case)
                r = _count(row_retries) if j == 0 else 0
            cost = c.get("cost_usd")
            self.buf.append(
                (
                    row,
                    _key64(c.get("key")),
                    self.roles.setdefault(role, len(self.roles)),
                    bool(c.get("cached")),
                    np.nan if cost is None else cost,
                    c.get("input_tokens") or 0,
                    c.get("output_tokens") or 0,
                    c.get("cached_input_tokens") or 0,
                    c.get("reasoning_tokens") or 0,
                    r,
                )
            )
        if len(self.buf) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            for chunks, values, dtype in zip(
                self.chunks, zip(*self.buf, strict=True), _ENTRY_DTYPES, strict=True
            ):
                chunks.append(np.array(values, dtype=dtype))
            self.buf = []

    def finish(self) -> CallLog:
        self.flush()
        cat = [
            np.concatenate(c) if c else np.zeros(0, d)
            for c, d in zip(self.chunks, _ENTRY_DTYPES, strict=True)
        ]
        self.chunks = [[] for _ in _ENTRY_DTYPES]
        return CallLog(
            row=cat[0],
            key=cat[1],
            role=cat[2],
            roles=list(self.roles),
            cached=cat[3],
            cost_usd=cat[4],
            counts=dict(zip(CALL_FIELDS, cat[5:], strict=True)),
        )


@dataclass
class CompactRecords:
    """What `read_compact` gives: the rows the metrics read, and their calls."""

    rows: pd.DataFrame
    calls: CallLog


def read_compact(
    path: Path,
    payload_fields: Mapping[str, Mapping[str, str]] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> CompactRecords:
    """records.jsonl in one pass, line by line, keeping only what the summary and the report
    read (TEXT_COLUMNS, NUMBER_COLUMNS, FLAG_COLUMNS, the payload fields each intervention
    declares) and the call accounting as a CallLog; about 10x less memory than
    `read_records`. Same rules for bad lines; the columns hold the values and dtypes
    `read_records` gives them (but small counts in small integers, `request_key` on failed
    rows only, and a field missing from every line reads as None).

    payload_fields: intervention name -> {payload key: text | flag | number}; by default
    what each registered intervention declares (`Intervention.payload_fields`).
    chunk_rows: rows (and call entries) parsed into Python values before they are packed."""
    declared = _declared_payload if payload_fields is None else payload_fields.get
    text_names = TEXT_COLUMNS[:-1]  # request_key: failed rows only, below
    plain_names = (*NUMBER_COLUMNS, *FLAG_COLUMNS)
    text_of, plain_of = itemgetter(*text_names), itemgetter(*plain_names)
    columns = {c: _Column(False) for c in TEXT_COLUMNS}
    columns.update({c: _Column(c in NUMBER_COLUMNS) for c in plain_names})
    kinds: dict[str, str] = {}
    own: dict[Any, dict[str, str]] = {}
    calls = _CallBuilder(chunk_rows)
    strings: dict[Any, Any] = {}
    share = strings.setdefault  # one object per distinct value, whatever row it is in
    texts: list[list[Any]] = []
    plain: list[tuple] = []
    failed_keys: list[Any] = []
    payloads: dict[str, list[Any]] = {}
    at_retries = plain_names.index("retries")
    n = 0

    def flush() -> None:
        if not texts:
            return
        for name, values in zip(text_names, zip(*texts, strict=True), strict=True):
            columns[name].add(values)
        columns["request_key"].add(failed_keys)
        for name, values in zip(plain_names, zip(*plain, strict=True), strict=True):
            columns[name].add(values)
        for name, values in payloads.items():
            columns[name].add(values)
            values.clear()
        texts.clear()
        plain.clear()
        failed_keys.clear()

    for _, rec in iter_records(path):
        iv = rec.get("intervention")
        if iv not in own:
            own[iv] = dict(declared(iv) or {})
            for key, kind in own[iv].items():
                name = PAYLOAD_PREFIX + key
                if kinds.setdefault(name, kind) != kind:
                    raise ValueError(f"payload field {key!r}: declared {kinds[name]} and {kind}")
                if name not in columns:
                    columns[name] = _Column(kind == "number")
                    done = n - len(texts)
                    if done:  # the rows already packed, before any row had it
                        columns[name].add([False if kind == "flag" else None] * done)
                    payloads[name] = [False if kind == "flag" else None] * len(texts)
        try:
            t, v = text_of(rec), plain_of(rec)
        except KeyError:  # an older schema: a missing field reads as None
            t = tuple(rec.get(c) for c in text_names)
            v = tuple(rec.get(c) for c in plain_names)
        try:
            texts.append(list(map(share, t, t)))
        except TypeError:  # an unhashable value where a string belongs: kept as it is
            texts.append(list(t))
        plain.append(v)
        failed_keys.append(
            share(rec.get("request_key"), rec.get("request_key"))
            if rec.get("parse_status") == CALL_FAILED
            else None
        )
        if payloads:
            mine, body = own[iv], rec.get("payload") or {}
            for name, values in payloads.items():
                key = name[len(PAYLOAD_PREFIX) :]
                x = body.get(key) if key in mine else None
                if kinds[name] == "flag":
                    x = bool(x)
                elif type(x) is str:
                    x = share(x, x)
                values.append(x)
        calls.add(n, rec.get("call_log"), v[at_retries])
        n += 1
        if len(texts) >= chunk_rows:
            flush()
    flush()
    frame = pd.DataFrame({name: col.finish(name) for name, col in columns.items()})
    return CompactRecords(frame, calls.finish())


def _declared_payload(intervention: Any) -> dict[str, str]:
    from cotfaith.interventions.base import intervention_class

    cls = intervention_class(str(intervention)) if intervention is not None else None
    return dict(getattr(cls, "payload_fields", {}) or {})
