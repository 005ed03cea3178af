"""The experiment: stage 1 samples CoTs, stage 2 runs the interventions on each, as they come.

Every model call goes through the request cache, so a rerun is free, a killed run resumes by
running again, and `cache.mode=replay` re-derives everything offline. Records are written as
they are produced. Preflight checks (key, reachability, model, probed capabilities) run before
any task is built, so a misconfigured backend fails in one line before anything is spent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cotfaith.budget import Budget
from cotfaith.cache import CachedModel, CacheMode, RequestCache
from cotfaith.context import Answered, RunContext, Trace, failed_answer
from cotfaith.dryrun import DryRunModel
from cotfaith.errors import ConfigError
from cotfaith.interventions.base import build_interventions
from cotfaith.models import build_model
from cotfaith.models.base import Model, ModelRequest, request_key
from cotfaith.models.retry import CallFailed
from cotfaith.pricing import PriceTable
from cotfaith.prompts import load_templates
from cotfaith.readout import AnswerReader, choose_strategy
from cotfaith.records import REFERENCE, RecordWriter
from cotfaith.segment import SEGMENTERS, prefix, split_steps
from cotfaith.tasks import build_task
from cotfaith.tasks.base import Question

log = logging.getLogger(__name__)


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


def _resolve(path: str | None, base: Path) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _override(cfg: Any, model_key: str, default: Any) -> Any:
    """A model-level sampling override (model.temperature...) or the sampling default."""
    value = cfg.model.get(model_key) if hasattr(cfg.model, "get") else None
    return default if value is None else value


def cot_request(ctx: RunContext, q: Question, sample: int, cfg: Any) -> ModelRequest:
    instructed = ctx.cot_prompt == "instructed"
    return ModelRequest(
        messages=ctx.templates.cot_request_messages(q, instructed=instructed),
        prefill=None if instructed else ctx.templates.cot_prefix,
        temperature=float(_override(cfg, "temperature", cfg.sampling.temperature)),
        top_p=float(_override(cfg, "top_p", cfg.sampling.top_p)),
        max_tokens=int(_override(cfg, "max_tokens", cfg.sampling.max_tokens)),
        sample_index=sample,
    )


def _open_cache(cfg: Any, launch_dir: Path, dry_run: bool) -> RequestCache:
    path = _resolve(str(cfg.cache.path), launch_dir)
    mode = str(getattr(cfg.cache.mode, "value", cfg.cache.mode))
    if dry_run:
        # peek at what is already paid for; never write
        cache = RequestCache(path, mode if path.exists() else CacheMode.off)
        cache.readonly = True
        return cache
    return RequestCache(path, mode)


async def run_async(cfg: Any, out_dir: Path, launch_dir: Path) -> RunResult:
    started = time.monotonic()
    dry_run = bool(cfg.get("dry_run", False))
    model: Model = build_model(cfg.model)
    prices = PriceTable(cfg.get("prices"))
    price = prices.lookup(str(cfg.model.name))
    max_usd = cfg.budget.max_usd if "budget" in cfg else None
    if max_usd is not None and price is None:
        raise ConfigError(
            f"budget.max_usd is set but conf/prices has no price for model "
            f"{cfg.model.name!r}; add one so spending can be tracked"
        )
    segmenter = str(cfg.segmentation.method)
    if segmenter not in SEGMENTERS:
        raise ConfigError(
            f"segmentation.method: unknown segmenter {segmenter!r}; known: {sorted(SEGMENTERS)}"
        )
    interventions = build_interventions(cfg.intervention)
    n_samples = int(cfg.sampling.n_samples)
    if n_samples < 1:
        raise ConfigError(f"sampling.n_samples must be >= 1, got {n_samples}")
    templates = load_templates(_resolve(cfg.prompts.path, launch_dir))
    questions = build_task(cfg.task)
    cache = _open_cache(cfg, launch_dir, dry_run)
    try:
        if not dry_run:
            await model.preflight(cache)  # before any expensive work
        strategy = choose_strategy(str(cfg.answer.strategy), model.capabilities)
    except BaseException:
        cache.close()
        await model.aclose()
        raise
    backend: Model = DryRunModel(model, price) if dry_run else model
    client = CachedModel(backend, cache, price, Budget(max_usd, price))
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(out_dir / ("dry_run_records.jsonl" if dry_run else "records.jsonl"))
    traces_fh = (out_dir / "traces.jsonl").open("w", encoding="utf-8") if not dry_run else None
    can_prefill = model.capabilities.prefill
    ctx = RunContext(
        model=client,
        templates=templates,
        reader=AnswerReader(strategy, templates, prefill=can_prefill),
        writer=writer,
        segmenter=segmenter,
        model_name=str(cfg.model.name),
        provider=str(cfg.model.provider),
        continuation=model.continuation if can_prefill else "none",
        cot_prompt="prefill" if can_prefill else "instructed",
    )
    per_trace = [iv for iv in interventions if iv.scope == "trace"]
    per_question = [iv for iv in interventions if iv.scope == "question"]
    log.info(
        "%s%d questions x %d CoT samples, interventions %s, model %s/%s, answers by %s, "
        "CoT by %s, steps by %s, cache %s (%s)",
        "DRY RUN (no model is called): " if dry_run else "",
        len(questions),
        n_samples,
        [iv.name for iv in interventions],
        ctx.provider,
        ctx.model_name,
        strategy,
        ctx.cot_prompt,
        segmenter,
        cache.path,
        cache.mode.value,
    )
    units = len(questions) * (n_samples + len(per_question))
    bar = tqdm(
        total=units,
        desc="cotfaith",
        unit="unit",
        disable=not cfg.progress,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    # bounds the units in flight, so memory stays flat however large the task
    in_flight = asyncio.Semaphore(max(16, 2 * int(backend.concurrency)))

    async def sample_unit(q: Question, s: int) -> None:
        async with in_flight:
            request = cot_request(ctx, q, s, cfg)
            try:
                response, key = await ctx.call(request)
            except CallFailed as e:
                ctx.emit(
                    q,
                    failed_answer(e, request_key(client.identity, request)),
                    intervention=REFERENCE,
                    condition="full",
                    sample=s,
                )
                return
            cot = response.text
            steps = split_steps(cot, segmenter)
            answered: Answered = await ctx.answer(q, prefix(cot, steps, len(steps)))
            ctx.emit(
                q,
                answered,
                intervention=REFERENCE,
                condition="full",
                sample=s,
                n_steps=len(steps),
                calls=[(response, key)],
                extra={"cot_request_key": key},
            )
            if traces_fh is not None:
                traces_fh.write(
                    json.dumps(
                        {
                            "task": q.task,
                            "question_id": q.id,
                            "sample": s,
                            "question": q.text,
                            "choices": list(q.choices),
                            "gold": q.answer,
                            "cot": cot,
                            "steps": [st.text for st in steps],
                            "answer": answered.parsed.letter,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                traces_fh.flush()
            if answered.error is None:
                trace = Trace(q, s, cot, steps, answered.parsed)
                await asyncio.gather(*(iv.run_trace(ctx, trace) for iv in per_trace))
        bar.update(1)

    async def question_unit(q: Question, iv: Any) -> None:
        async with in_flight:
            await iv.run_question(ctx, q)
        bar.update(1)

    try:
        async with asyncio.TaskGroup() as tg:
            for q in questions:
                for iv in per_question:
                    tg.create_task(question_unit(q, iv))
                for s in range(n_samples):
                    tg.create_task(sample_unit(q, s))
    except* Exception as group:
        # surface the first real error (a replay miss, the budget) rather than the group, and
        # still say in run.json what was done and spent before it
        error = group.exceptions[0]
        _finish(bar, writer, traces_fh)
        write_run_json(
            _result(out_dir, started, writer, client, model, backend),
            ctx,
            cache,
            stopped_by=str(error),
        )
        raise error from None
    finally:
        _finish(bar, writer, traces_fh)
        cache.close()
        await model.aclose()
    result = _result(out_dir, started, writer, client, model, backend)
    write_run_json(result, ctx, cache)
    return result


def _finish(bar: Any, writer: RecordWriter, traces_fh: Any) -> None:
    bar.close()
    writer.close()
    if traces_fh is not None:
        traces_fh.close()


def _result(
    out_dir: Path,
    started: float,
    writer: RecordWriter,
    client: CachedModel,
    model: Model,
    backend: Model,
) -> RunResult:
    stats = client.stats
    retry_stats = getattr(model, "retry_stats", None)
    return RunResult(
        out_dir=out_dir,
        records=writer.count,
        calls=stats.calls,
        cache_hits=stats.cache_hits,
        seconds=time.monotonic() - started,
        spent_usd=client.budget.spent,
        retries=retry_stats.retries if retry_stats else 0,
        retry_reasons=dict(retry_stats.by_reason) if retry_stats else {},
        failed_calls=writer.failed,
        notices=list(getattr(model, "notices", [])),
        dry_run=backend.estimate(stats.cache_hits) if isinstance(backend, DryRunModel) else None,
    )


def write_run_json(
    result: RunResult, ctx: RunContext, cache: RequestCache, stopped_by: str | None = None
) -> None:
    data = {
        "records": result.records,
        "calls": result.calls,
        "cache_hits": result.cache_hits,
        "seconds": round(result.seconds, 3),
        "spent_usd": result.spent_usd,
        "retries": result.retries,
        "retry_reasons": result.retry_reasons,
        "failed_calls": result.failed_calls,
        "notices": result.notices,
        "answer_strategy": ctx.reader.strategy,
        "cot_prompt": ctx.cot_prompt,
        "continuation": ctx.continuation,
        "segmenter": ctx.segmenter,
        "backend": ctx.model.identity,  # never holds a key: keys are not part of any identity
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
