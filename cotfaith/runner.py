"""The experiment: the reasoning method makes traces, the interventions run on each as it comes.

Every model call goes through the request cache, so a rerun is free, a killed run resumes by
running again, and `cache.mode=replay` re-derives everything offline. Records are written as
they are produced. Preflight checks (key, reachability, model, probed capabilities) run for
every role before any task is built, so a misconfigured backend fails in one line before
anything is spent. The runner names no intervention, method or backend: they come from the
registry (cotfaith.registry) and the config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cotfaith.budget import Budget
from cotfaith.cache import CachedModel, CacheMode, RequestCache, process_alive
from cotfaith.context import MODEL, Role, RunContext, Sampling, Trace
from cotfaith.continuation import choose_continuation
from cotfaith.dryrun import DryRunModel
from cotfaith.errors import ConfigError
from cotfaith.interventions.base import Intervention, build_interventions
from cotfaith.models import build_model
from cotfaith.models.base import Model
from cotfaith.pricing import PriceTable
from cotfaith.prompts import load_templates
from cotfaith.readout import AnswerReader, choose_strategy
from cotfaith.reasoning.base import build_reasoning
from cotfaith.records import RecordWriter, TraceWriter
from cotfaith.segment import SEGMENTERS
from cotfaith.tasks import build_task
from cotfaith.tasks.base import Question
from cotfaith.validate import named_secrets, validate

log = logging.getLogger(__name__)

MAX_RETRY_ROUNDS = 3
"""End-of-run retry rounds at most: a round retries the calls that failed; a call first reached
in a round (after its reference failed before) is retried in the next; the chain is at most
CoT -> reference answer -> the points after it."""

SAME = "same"
"""A role whose config says `provider: same` is played by the model under test."""


@dataclass
class RunResult:
    out_dir: Path
    records: int
    calls: int
    cache_hits: int
    seconds: float
    spent_usd: float = 0.0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    failed_calls: int = 0
    notices: list[str] = field(default_factory=list)
    dry_run: dict[str, Any] | None = None
    roles: dict[str, Any] = field(default_factory=dict)
    skipped_records: int = 0
    """Malformed records the task skipped (task.on_bad_record=skip)."""
    status: str = "ok"
    """ok | failed_calls (too many failed for good; exit code 4) | stopped | interrupted."""
    failed_rows: int = 0
    """Rows whose call failed (failed_calls counts distinct calls)."""
    answers: int = 0
    """Rows with an answer read."""
    priced: bool = True
    """Every role's model has a price (else spending is unknown, not $0)."""
    retried_failed_calls: int = 0
    preflight_retries: int = 0
    """Retries of the checks before the run (model check, probes): in no record."""
    """Failed calls sent again by the end-of-run retry (retry_failed_at_end); `failed_calls`
    counts those that still failed."""


def _resolve(path: str | None, base: Path) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _override(cfg: Any, model_key: str, default: Any) -> Any:
    """A model-level sampling override (model.temperature...) or the sampling default."""
    value = cfg.model.get(model_key) if hasattr(cfg.model, "get") else None
    return default if value is None else value


def _open_cache(cfg: Any, launch_dir: Path, dry_run: bool) -> RequestCache:
    path = _resolve(str(cfg.cache.path), launch_dir)
    mode = str(getattr(cfg.cache.mode, "value", cfg.cache.mode))
    if dry_run:
        # peek at what is already paid for; never write
        cache = RequestCache(path, mode if path.exists() else CacheMode.off)
        cache.readonly = True
        return cache
    return RequestCache(path, mode)


@dataclass
class _Backend:
    """One backend of the run and the roles it plays (a helper role may share the model
    under test's backend, and then its client, concurrency and identity)."""

    model: Model
    config: Any
    roles: list[str]
    client: CachedModel | None = None


def _role_backends(cfg: Any, interventions: list[Intervention]) -> list[_Backend]:
    under_test = _Backend(build_model(cfg.model), cfg.model, [MODEL])
    backends = [under_test]
    wanted = sorted({role for iv in interventions for role in iv.roles})
    for role in wanted:
        rcfg = cfg.get(role)
        if rcfg is None or rcfg.get("provider") in (None, SAME):
            under_test.roles.append(role)
        else:
            backends.append(_Backend(build_model(rcfg), rcfg, [role]))
    return backends


class RunFolder:
    """Owns a run folder for the length of a run: never two runs in one folder, and never a
    folder that holds another run's records unless told to resume into it."""

    def __init__(self, out_dir: Path, *, resume: bool, records: str):
        self.lock = out_dir / ".cotfaith.lock"
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = self._holder()
            if holder is not None and process_alive(holder):
                raise ConfigError(
                    f"run folder {out_dir} is in use by another cotfaith run (pid {holder}); "
                    "choose another folder (hydra.run.dir=...)"
                ) from None
            self.lock.unlink(missing_ok=True)  # a killed run's lock
            fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError as e:
            raise ConfigError(f"run folder {out_dir} is not writable ({e.strerror})") from e
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        held = out_dir / records
        if held.exists() and held.stat().st_size:
            if not resume:
                self.release()
                raise ConfigError(
                    f"run folder {out_dir} already holds {records} from another run; choose a "
                    "new folder (hydra.run.dir=...) or add resume=true to rebuild it from the "
                    "cache"
                )
            # rebuilt from the cache; the old rows stay beside it in case the cache lacks some
            held.replace(held.with_name(held.name + ".bak"))

    def _holder(self) -> int | None:
        try:
            return int(self.lock.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        self.lock.unlink(missing_ok=True)


async def run_async(
    cfg: Any, out_dir: Path, launch_dir: Path, overrides: list[str] | None = None
) -> RunResult:
    """Run one experiment; `overrides` (the job's command-line overrides) go into every
    record, so rows of a sweep say which job they came from."""
    started = time.monotonic()
    validate(cfg)
    dry_run = bool(cfg.get("dry_run", False))
    segmenter = str(cfg.segmentation.method)
    if segmenter not in SEGMENTERS:
        raise ConfigError(
            f"segmentation.method: unknown segmenter {segmenter!r}; known: {sorted(SEGMENTERS)}"
        )
    interventions = build_interventions(cfg.intervention)
    method = build_reasoning(cfg.get("reasoning") or {"name": "cot"})
    n_samples = int(cfg.sampling.n_samples)
    if n_samples < 1:
        raise ConfigError(f"sampling.n_samples must be >= 1, got {n_samples}")
    backends = _role_backends(cfg, interventions)
    model = backends[0].model
    prices = PriceTable(cfg.get("prices"))
    max_usd = cfg.budget.max_usd if "budget" in cfg else None
    for b in backends:
        if max_usd is not None and prices.lookup(str(b.config.name)) is None:
            raise ConfigError(
                f"budget.max_usd is set but conf/prices has no price for model "
                f"{b.config.name!r} ({', '.join(b.roles)}); add one so spending can be tracked"
            )
    templates = load_templates(_resolve(cfg.prompts.path, launch_dir), named_secrets(cfg))
    questions = build_task(cfg.task)
    for b in backends:
        observe = getattr(b.model, "observe_questions", None)
        if observe is not None:
            observe(questions)  # the organism's answer key for real benchmark questions
        check = getattr(b.model, "check_prompts", None)
        if check is not None and questions:
            check(templates, questions[0])  # the organism reads only the default wording
    cache = _open_cache(cfg, launch_dir, dry_run)

    async def release_backends() -> None:
        cache.close()
        for b in backends:
            await b.model.aclose()

    try:
        if not dry_run:
            for b in backends:
                await b.model.preflight(cache)  # before any expensive work
        strategy = choose_strategy(str(cfg.answer.strategy), model.capabilities)
        continuation = choose_continuation(cfg.get("continuation") or {}, model, interventions)
    except BaseException:
        await release_backends()
        raise
    budget = Budget(max_usd, None)
    for b in backends:
        price = prices.lookup(str(b.config.name))
        backend: Model = DryRunModel(b.model, price) if dry_run else b.model
        b.client = CachedModel(backend, cache, price, budget)
    client = backends[0].client
    assert client is not None
    records_name = "dry_run_records.jsonl" if dry_run else "records.jsonl"
    try:
        folder = RunFolder(out_dir, resume=bool(cfg.get("resume", False)), records=records_name)
    except BaseException:
        await release_backends()
        raise
    writer = RecordWriter(out_dir / records_name)
    traces = None if dry_run else TraceWriter(out_dir / "traces.jsonl")
    can_prefill = model.capabilities.prefill
    roles = {
        role: Role(
            role,
            b.client,
            str(b.config.provider),
            str(b.config.name),
            b.model.capabilities.prefill,
        )
        for b in backends
        for role in b.roles
    }
    ctx = RunContext(
        model=client,
        templates=templates,
        reader=AnswerReader(
            strategy,
            templates,
            prefill=can_prefill,
            min_mass=float(cfg.answer.get("min_letter_mass", 0.5)),
        ),
        writer=writer,
        segmenter=segmenter,
        model_name=str(cfg.model.name),
        provider=str(cfg.model.provider),
        sampling=Sampling(
            temperature=float(_override(cfg, "temperature", cfg.sampling.temperature)),
            top_p=float(_override(cfg, "top_p", cfg.sampling.top_p)),
            max_tokens=int(_override(cfg, "max_tokens", cfg.sampling.max_tokens)),
        ),
        continuation=model.continuation if can_prefill else "none",
        cot_prompt="prefill" if can_prefill else "instructed",
        continuation_strategy=continuation,
        roles=roles,
        method=method.name,
        overrides=" ".join(overrides or ()),
    )
    by_scope: dict[str, list[Intervention]] = {"question": [], "trace": [], "traces": []}
    for iv in interventions:
        by_scope[iv.scope].append(iv)
    log.info(
        "%s%d questions x %d samples, %s reasoning, interventions %s, model %s/%s, answers by "
        "%s, CoT by %s, continuation by %s, steps by %s, cache %s (%s)%s",
        "DRY RUN (no model is called): " if dry_run else "",
        len(questions),
        n_samples,
        method.name,
        [iv.name for iv in interventions],
        ctx.provider,
        ctx.model_name,
        strategy,
        ctx.cot_prompt,
        continuation or "-",
        segmenter,
        cache.path,
        cache.mode.value,
        "".join(
            f", {r} {b.config.provider}/{b.config.name}" for b in backends[1:] for r in b.roles
        ),
    )
    per_question = len(by_scope["question"]) + len(by_scope["traces"])
    bar = tqdm(
        total=len(questions) * (n_samples + per_question),
        desc="cotfaith",
        unit="unit",
        disable=not cfg.progress,
        mininterval=0.5,
        dynamic_ncols=True,
    )

    def progress_text() -> str:
        """Calls made, cache hits, retries, failed calls and money: on the bar, and in the
        periodic log line of a run without a bar."""
        clients = [b.client for b in backends if b.client is not None]
        calls = sum(c.stats.calls for c in clients)
        hits = sum(c.stats.cache_hits for c in clients)
        retried = sum(
            getattr(getattr(b.model, "retry_stats", None), "retries", 0) for b in backends
        )
        spent = budget.spent
        return (
            f"calls {calls}, cached {hits}, retries {retried}, "
            f"failed {len(ctx.writer.failed_keys)}, spent ${spent:.4f}"
        )

    def advance() -> None:
        bar.update(1)
        bar.set_postfix_str(progress_text(), refresh=False)

    async def heartbeat(every: float) -> None:
        # without a bar (progress=false, a cluster job's log) a long run still says it is alive
        while True:
            await asyncio.sleep(every)
            log.info("progress: %d/%d units; %s", bar.n, bar.total, progress_text())

    # bounds the units in flight, so memory stays flat however large the task
    in_flight = asyncio.Semaphore(
        max(16, 2 * max(int(b.client.model.concurrency) for b in backends))
    )

    trace_sink: list[TraceWriter | None] = [traces]
    """Where traces go: traces.jsonl, or the retry pass's own file."""

    async def sample_unit(q: Question, s: int) -> Trace | None:
        async with in_flight:
            trace = await method.trace(ctx, q, s)
            if trace is not None:
                if trace_sink[0] is not None:
                    trace_sink[0].write(trace)
                await asyncio.gather(*(iv.run_trace(ctx, trace) for iv in by_scope["trace"]))
        advance()
        return trace

    async def question_unit(q: Question, iv: Intervention) -> None:
        async with in_flight:
            await iv.run_question(ctx, q)
        advance()

    async def after_traces(q: Question, samples: list[asyncio.Task]) -> None:
        done = [t for t in await asyncio.gather(*samples) if t is not None]
        for iv in by_scope["traces"]:
            async with in_flight:
                if done:
                    await iv.run_traces(ctx, q, done)
            advance()

    async def run_units(chosen: list[Question]) -> None:
        async with asyncio.TaskGroup() as tg:
            for q in chosen:
                for iv in by_scope["question"]:
                    tg.create_task(question_unit(q, iv))
                samples = [tg.create_task(sample_unit(q, s)) for s in range(n_samples)]
                if by_scope["traces"]:
                    tg.create_task(after_traces(q, samples))

    stopped: BaseException | None = None
    final = writer
    retries: list[_RetryPass] = []
    retried: set[str] = set()

    async def retry_failed() -> None:
        """Every call that failed for good is sent once more at the end, in a round that runs
        its questions again: what succeeded is a cache hit (a run's own responses are served
        again in every cache mode), so only the failed calls go out. A call first reached in a
        round (a reference that failed before) gets its own retry in the next round."""
        nonlocal final
        for _ in range(MAX_RETRY_ROUNDS):
            pending = {
                qk: keys - retried for qk, keys in final.failed_questions.items() if keys - retried
            }
            if not pending:
                return
            chosen = [q for q in questions if (q.task, q.id) in pending]
            sent = set().union(*pending.values())
            retried.update(sent)
            round_ = _RetryPass(out_dir, records_name, set(pending))
            retries.append(round_)
            round_.open(traces is not None)
            ctx.writer, trace_sink[0] = round_.writer, round_.traces
            bar.total += len(chosen) * (n_samples + per_question)
            bar.refresh()
            log.info(
                "retrying %d failed call(s) of %d question(s) at the end of the run",
                len(sent),
                len(chosen),
            )
            await run_units(chosen)
            final = round_.merge(final, traces)
            log.info(
                "end-of-run retry: %d failed call(s) sent again, %d call(s) still failed",
                len(sent),
                len(final.failed_keys),
            )

    beat = (
        asyncio.get_running_loop().create_task(heartbeat(float(cfg.get("progress_every", 10))))
        if not cfg.progress and float(cfg.get("progress_every", 10)) > 0
        else None
    )
    try:
        try:
            await run_units(questions)
            if not dry_run and cfg.get("retry_failed_at_end", True):
                await retry_failed()
        except* Exception as group:
            # surface the first real error (a replay miss, the budget) rather than the group,
            # and still say in run.json what was done and spent before it
            stopped = group.exceptions[0]
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.run cancels us; say in run.json what was kept, then let it go on
        stopped = KeyboardInterrupt("interrupted (Ctrl-C)")
    finally:
        if beat is not None:
            beat.cancel()
        bar.close()
        writer.close()
        if traces is not None:
            traces.close()
        for round_ in retries:
            round_.discard()  # a round that did not finish leaves the rows before it
        await release_backends()
        folder.release()
    result = _result(out_dir, started, final, backends)
    result.retried_failed_calls = len(retried)
    result.status = run_status(result, stopped, float(cfg.get("max_failed_share", 0.05)))
    result.skipped_records = max(
        (int(q.meta.get("skipped_records", 0)) for q in questions), default=0
    )
    write_run_json(result, ctx, cache, stopped_by=str(stopped) if stopped else None)
    if isinstance(stopped, KeyboardInterrupt):
        raise asyncio.CancelledError()
    if stopped is not None:
        raise stopped from None
    return result


class _RetryPass:
    """The end-of-run retry: the retried questions' rows go to files of their own, then
    replace those questions' rows in records.jsonl and traces.jsonl (streamed line by line)."""

    def __init__(self, out_dir: Path, records_name: str, questions: set[tuple[str, str]]):
        self.records = out_dir / records_name
        self.traces_path = out_dir / "traces.jsonl"
        self.questions = questions
        """(task, question_id) of the questions run again."""
        self.writer: RecordWriter | None = None
        self.traces: TraceWriter | None = None

    def open(self, with_traces: bool) -> None:
        self.writer = RecordWriter(self.records.with_name(self.records.name + ".retry"))
        if with_traces:
            self.traces = TraceWriter(self.traces_path.with_name("traces.jsonl.retry"))

    def merge(self, first: RecordWriter, traces: TraceWriter | None) -> RecordWriter:
        """records.jsonl without the retried questions' earlier rows, then the retry's rows;
        returns the writer that counted the new file (for run.json and the exit code)."""
        import json

        from cotfaith.records import Record

        assert self.writer is not None
        first.close()
        self.writer.close()
        fresh: dict[str, dict[str, Any]] = {}
        """Calls the first pass paid for (in rows that are dropped): the retry finds them in
        the cache, but the run did spend on them, so their rows say so once."""
        merged = self.records.with_name(self.records.name + ".merged")
        final = RecordWriter(merged)
        try:
            with self.records.open(encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if (row["task"], row["question_id"]) in self.questions:
                        for call in row.get("call_log") or ():
                            if not call.get("cached"):
                                _sent(fresh, call)
                        continue
                    final.write(Record(**row))
            with self.writer.path.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        final.write(Record(**_paid_once(json.loads(line), fresh)))
        finally:
            final.close()
        merged.replace(self.records)
        self.writer.path.unlink(missing_ok=True)
        if self.traces is not None and traces is not None:
            traces.close()  # the first pass's writer; the file is rewritten below
            self.traces.close()
            self._merge_traces()
        return final

    def _merge_traces(self) -> None:
        import json

        assert self.traces is not None
        retry_path = self.traces_path.with_name("traces.jsonl.retry")
        merged = self.traces_path.with_name("traces.jsonl.merged")
        with merged.open("w", encoding="utf-8") as out:
            with self.traces_path.open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line) if line.strip() else None
                    if row is not None and (row["task"], row["question_id"]) not in self.questions:
                        out.write(line)
            with retry_path.open(encoding="utf-8") as fh:
                for line in fh:
                    out.write(line)
        merged.replace(self.traces_path)
        retry_path.unlink(missing_ok=True)
        self.traces = None

    def discard(self) -> None:
        """Remove what an unfinished retry wrote (its calls are in the cache for a rerun)."""
        for sink in (self.writer, self.traces):
            if sink is not None:
                sink.close()
        for path in (
            self.records.with_name(self.records.name + ".retry"),
            self.records.with_name(self.records.name + ".merged"),
            self.traces_path.with_name("traces.jsonl.retry"),
            self.traces_path.with_name("traces.jsonl.merged"),
        ):
            path.unlink(missing_ok=True)


def _sent(fresh: dict[str, dict[str, Any]], call: dict[str, Any]) -> None:
    """Fold a first-pass entry of `call` into `fresh`: rows that shared one send (a failure
    too) all hold it, so its retries are the most any entry says (as the summary counts them),
    and its cost is the one any entry knew (a failed send has none)."""
    seen = fresh.get(call["key"])
    if seen is None:
        fresh[call["key"]] = dict(call)
        return
    seen["retries"] = max(seen.get("retries", 0), call.get("retries", 0))
    if seen.get("cost_usd") is None:
        seen["cost_usd"] = call.get("cost_usd")


def _paid_once(row: dict[str, Any], fresh: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A retry row holding calls the first pass sent (in rows that were dropped): the first row
    that holds each says what the run did for it, so summing the records still gives what the
    run sent, spent and retried. A call the first pass paid for (a cache hit now) is marked
    sent, with its cost and retries; the call that failed and was sent again adds the failed
    attempts' retries to its own."""
    log_ = row.get("call_log") or []
    if not any(c["key"] in fresh for c in log_):
        return row
    calls = []
    for c in log_:
        first = fresh.pop(c["key"], None)
        if first is None:
            calls.append(c)
        elif c.get("cached"):  # paid for in the first pass, served by the cache now
            calls.append(
                {
                    **c,
                    "cached": False,
                    "cost_usd": first.get("cost_usd"),
                    "retries": first.get("retries", 0),
                }
            )
        else:  # failed (or came back empty) in the first pass, sent again now
            cost = c.get("cost_usd")
            if first.get("cost_usd") is not None:  # both sends were paid for
                cost = (cost or 0.0) + first["cost_usd"]
            calls.append(
                {**c, "retries": c.get("retries", 0) + first.get("retries", 0), "cost_usd": cost}
            )
    costs = [c["cost_usd"] for c in calls if c.get("cost_usd") is not None]
    spent = [c["cost_usd"] for c in calls if c.get("cost_usd") is not None and not c["cached"]]
    return {
        **row,
        "call_log": calls,
        "cache_hits": sum(bool(c.get("cached")) for c in calls),
        "cached": all(bool(c.get("cached")) for c in calls),
        "retries": sum(c.get("retries", 0) for c in calls),
        "spent_usd": sum(spent) if spent else (0.0 if costs else None),
    }


def run_status(result: RunResult, stopped: BaseException | None, max_failed_share: float) -> str:
    """What the exit code reports: a run whose calls failed beyond the threshold did not
    measure what it was asked to, whatever it wrote."""
    if isinstance(stopped, KeyboardInterrupt):
        return "interrupted"
    if stopped is not None:
        return "stopped"
    if result.failed_calls and (
        result.answers == 0 or result.failed_calls > max_failed_share * max(result.calls, 1)
    ):
        return "failed_calls"
    return "ok"


def _result(out_dir: Path, started: float, writer: RecordWriter, backends: list[_Backend]):
    retries, reasons, notices = 0, {}, []
    preflight = sum(
        getattr(getattr(b.model, "preflight_stats", None), "retries", 0) for b in backends
    )
    for b in backends:
        stats = getattr(b.model, "retry_stats", None)
        if stats is not None:
            retries += stats.retries
            for k, v in stats.by_reason.items():
                reasons[k] = reasons.get(k, 0) + v
        notices += [n for n in getattr(b.model, "notices", []) if n not in notices]
    clients = [b.client for b in backends if b.client is not None]
    backend = clients[0].model
    priced = all(c.price is not None for c in clients)
    return RunResult(
        out_dir=out_dir,
        records=writer.count,
        calls=sum(c.stats.calls for c in clients),
        cache_hits=sum(c.stats.cache_hits for c in clients),
        seconds=time.monotonic() - started,
        spent_usd=clients[0].budget.spent,
        retries=retries,
        retry_reasons=reasons,
        preflight_retries=preflight,
        failed_calls=len(writer.failed_keys),
        failed_rows=writer.failed,
        answers=writer.answers,
        notices=notices,
        dry_run=(_dry_run_estimate(clients) if isinstance(backend, DryRunModel) else None),
        roles=writer.role_totals(),
        priced=priced,
    )


def _dry_run_estimate(clients: list[CachedModel]) -> dict[str, Any]:
    parts = [c.model.estimate(c.stats.cache_hits) for c in clients]
    out = dict(parts[0])
    for part in parts[1:]:
        for k, v in part.items():
            if out.get(k) is None or v is None:
                out[k] = None if k.endswith("usd") and (out.get(k) is None or v is None) else v
            else:
                out[k] = out[k] + v
    return out


def write_run_json(
    result: RunResult, ctx: RunContext, cache: RequestCache, stopped_by: str | None = None
) -> None:
    import json

    data = {
        "status": result.status,
        "records": result.records,
        "calls": result.calls,
        "cache_hits": result.cache_hits,
        "seconds": round(result.seconds, 3),
        "spent_usd": result.spent_usd,
        "retries": result.retries,
        "retry_reasons": result.retry_reasons,
        "failed_calls": result.failed_calls,
        "failed_rows": result.failed_rows,
        "retried_failed_calls": result.retried_failed_calls,
        "preflight_retries": result.preflight_retries,
        "answers": result.answers,
        "notices": result.notices,
        "answer_strategy": ctx.reader.strategy,
        "answer_mode": ctx.reader.mode,
        "min_letter_mass": ctx.reader.min_mass,
        "cot_prompt": ctx.cot_prompt,
        "continuation": ctx.continuation,
        "continuation_strategy": ctx.continuation_strategy,
        "segmenter": ctx.segmenter,
        "method": ctx.method,
        "backend": ctx.model.identity,  # never holds a key: keys are not part of any identity
        "roles": {
            name: {
                "provider": role.provider,
                "model": role.model_name,
                "backend": role.client.identity,
                **result.roles.get(name, {}),
            }
            for name, role in {MODEL: ctx.role(MODEL), **ctx.roles}.items()
        },
        "skipped_records": result.skipped_records,
        "cache_path": str(cache.path),
        "cache_mode": cache.mode.value,
    }
    if stopped_by is not None:
        data["stopped_by"] = stopped_by
    if result.dry_run is not None:
        data["dry_run"] = result.dry_run
    name = "dry_run.json" if result.dry_run is not None else "run.json"
    (result.out_dir / name).write_text(
        json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8"
    )
