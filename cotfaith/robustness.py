"""Robustness of early answering to the step segmenter, from answers already paid for.

The segmenter changes the numbers (sentence vs newline splitting of the same CoTs gave 0.44 vs
0.24 on one run), so the report shows the AOC under every segmenter. For a segmenter the run did
not use, each CoT is split again and the truncation requests it implies are looked up in the
request cache: when every one is there, the AOC is recomputed from those cached answers at no
cost; otherwise the report says how many calls are missing and how to get them (rerun with that
segmenter: the prefixes both segmenters share are cache hits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cotfaith.answers import ParsedAnswer
from cotfaith.cache import RequestCache
from cotfaith.curvestats import apply_rule, per_cot
from cotfaith.models.base import ModelResponse, request_key
from cotfaith.prompts import load_templates
from cotfaith.readout import AnswerReader
from cotfaith.segment import SEGMENTERS, prefix, split_steps
from cotfaith.tasks.base import Question


def _question(t: dict[str, Any]) -> Question:
    return Question(
        id=str(t["question_id"]),
        text=t["question"],
        choices=tuple(t["choices"]),
        answer=t["gold"],
        task=t["task"],
        context=t.get("context"),
        demos=t.get("demos"),
        subtask=t.get("subtask"),
    )


def segmenter_table(run_dir: Path, rule: str = "drop") -> pd.DataFrame:
    """One row per segmenter: AOC (or NaN), CoTs, and the truncation calls still missing."""
    run_dir = Path(run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    config = (
        (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {})
        if (config_path.exists())
        else {}
    )
    run_path, traces_path = run_dir / "run.json", run_dir / "traces.jsonl"
    if not run_path.exists() or not traces_path.exists():
        return pd.DataFrame()
    run = json.loads(run_path.read_text(encoding="utf-8"))
    used = run.get("segmenter")
    cache_path = Path(run.get("cache_path", ""))
    if "answer_mode" not in run or not cache_path.is_file():
        return pd.DataFrame()
    prompts = (config.get("prompts") or {}).get("path")
    try:
        templates = load_templates(prompts)
    except Exception:  # noqa: BLE001 - a moved prompt file: no robustness table, not a crash
        return pd.DataFrame()
    reader = AnswerReader(
        run["answer_strategy"],
        templates,
        prefill=run["answer_mode"] == "prefill",
        min_mass=float(run.get("min_letter_mass", 0.5)),
    )
    identity = run["backend"]
    cache = RequestCache(cache_path, "replay")
    rows = []
    try:
        for seg in sorted(SEGMENTERS):
            points, missing, n_cots = _points(traces_path, seg, reader, cache, identity)
            cots, _ = per_cot(apply_rule(points, rule)) if len(points) else (pd.DataFrame(), 0)
            aoc = float(cots["a"].mean()) if missing == 0 and len(cots) else float("nan")
            rows.append(
                {
                    "segmenter": seg + (" (this run)" if seg == used else ""),
                    "aoc": aoc,
                    "n_cots": n_cots,
                    "mean_steps": (
                        float(points.groupby(["question_id", "sample"])["n_steps"].first().mean())
                        if len(points)
                        else float("nan")
                    ),
                    "missing_calls": missing,
                    "how": (
                        "recomputed from cached answers"
                        if missing == 0
                        else f"needs {missing} more calls: rerun with segmentation.method={seg}"
                    ),
                }
            )
    finally:
        cache.close()
    return pd.DataFrame(rows)


_POINT_COLUMNS = ("question_id", "sample", "n_steps", "k", "same_answer", "parse_status")


def _points(
    traces_path: Path, seg: str, reader: AnswerReader, cache: RequestCache, identity: Any
) -> tuple[pd.DataFrame, int, int]:
    """The truncation points `seg` implies for every trace whose answers are all cached (one
    trace in memory at a time; a point is a row of six columns, not a dict), the calls still
    missing, and the CoTs."""
    columns: dict[str, list[Any]] = {c: [] for c in _POINT_COLUMNS}
    strings: dict[str, str] = {}
    missing = n_cots = 0
    with traces_path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                t = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            if t.get("answer") is None:
                continue
            q = _question(t)
            steps = split_steps(t["cot"], seg)
            n = len(steps)
            if n == 0:
                continue
            n_cots += 1
            qid = strings.setdefault(q.id, q.id)
            for k in range(n + 1):
                request = reader.request(q, prefix(t["cot"], steps, k))
                hit = cache.get(request_key(identity, request))
                if hit is None:
                    missing += 1
                    continue
                parsed: ParsedAnswer = reader.read(q, ModelResponse.from_dict(hit))
                for name, value in zip(
                    _POINT_COLUMNS,
                    (
                        qid,
                        t["sample"],
                        n,
                        k,
                        parsed.letter is not None and parsed.letter == t["answer"],
                        strings.setdefault(parsed.status, parsed.status),
                    ),
                    strict=True,
                ):
                    columns[name].append(value)
    return pd.DataFrame(columns), missing, n_cots
