"""The experiment: stage 1 samples CoTs, stage 2 runs the interventions on each, as they come.

Every model call goes through the request cache, so a rerun is free, a killed run resumes by
running again, and `cache.mode=replay` re-derives everything offline. Records are written as
they are produced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cotfaith.cache import CachedModel, RequestCache
from cotfaith.context import RunContext, Trace
from cotfaith.errors import ConfigError
from cotfaith.interventions.base import build_interventions
from cotfaith.models import build_model
from cotfaith.models.base import ModelRequest
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


def _resolve(path: str | None, base: Path) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def cot_request(ctx: RunContext, q: Question, sample: int, sampling: Any) -> ModelRequest:
    return ModelRequest(
        messages=ctx.templates.cot_request_messages(q),
        prefill=ctx.templates.cot_prefix,
        temperature=float(sampling.temperature),
        top_p=float(sampling.top_p),
        max_tokens=int(sampling.max_tokens),
        sample_index=sample,
    )


async def run_async(cfg: Any, out_dir: Path, launch_dir: Path) -> RunResult:
    started = time.monotonic()
    questions = build_task(cfg.task)
    model = build_model(cfg.model)
    templates = load_templates(_resolve(cfg.prompts.path, launch_dir))
    strategy = choose_strategy(str(cfg.answer.strategy), model.capabilities)
    segmenter = str(cfg.segmentation.method)
    if segmenter not in SEGMENTERS:
        raise ConfigError(
            f"segmentation.method: unknown segmenter {segmenter!r}; known: {sorted(SEGMENTERS)}"
        )
    interventions = build_interventions(cfg.intervention)
    n_samples = int(cfg.sampling.n_samples)
    if n_samples < 1:
        raise ConfigError(f"sampling.n_samples must be >= 1, got {n_samples}")
    cache_path = _resolve(str(cfg.cache.path), launch_dir)
    cache = RequestCache(cache_path, str(getattr(cfg.cache.mode, "value", cfg.cache.mode)))
    client = CachedModel(model, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(out_dir / "records.jsonl")
    traces_fh = (out_dir / "traces.jsonl").open("w", encoding="utf-8")
    ctx = RunContext(
        model=client,
        templates=templates,
        reader=AnswerReader(strategy, templates),
        writer=writer,
        segmenter=segmenter,
        model_name=str(cfg.model.name),
        provider=str(cfg.model.provider),
    )
    per_trace = [iv for iv in interventions if iv.scope == "trace"]
    per_question = [iv for iv in interventions if iv.scope == "question"]
    log.info(
        "%d questions x %d CoT samples, interventions %s, model %s/%s, answers by %s, "
        "steps by %s, cache %s (%s)",
        len(questions),
        n_samples,
        [iv.name for iv in interventions],
        ctx.provider,
        ctx.model_name,
        strategy,
        segmenter,
        cache_path,
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
    in_flight = asyncio.Semaphore(max(16, 2 * int(model.concurrency)))

    async def sample_unit(q: Question, s: int) -> None:
        async with in_flight:
            response, key = await ctx.call(cot_request(ctx, q, s, cfg.sampling))
            cot = response.text
            steps = split_steps(cot, segmenter)
            answered = await ctx.answer(q, prefix(cot, steps, len(steps)))
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
        # surface the first real error (a replay miss, a config problem) rather than the group
        raise group.exceptions[0] from None
    finally:
        bar.close()
        writer.close()
        traces_fh.close()
        cache.close()
        await model.aclose()
    stats = client.stats
    result = RunResult(
        out_dir, writer.count, stats.calls, stats.cache_hits, time.monotonic() - started
    )
    (out_dir / "run.json").write_text(
        json.dumps(
            {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()},
                "answer_strategy": strategy,
                "segmenter": segmenter,
                "backend": client.identity,
                "cache_path": str(cache_path),
                "cache_mode": cache.mode.value,
            },
            indent=2,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    return result
