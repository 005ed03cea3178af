"""The Python API, for notebooks and scripts: run an experiment, load any run folder.

    >>> from cotfaith import run, load_run
    >>> result = run({"task.n_questions": 6, "sampling.n_samples": 2}, out_dir="outputs/nb")
    >>> result.summary[["intervention", "aoc", "aoc_ci_low", "aoc_ci_high"]]  # doctest: +SKIP
    >>> result.records.groupby("n_steps")["same_answer"].mean()               # doctest: +SKIP
    >>> sweep = load_run("outputs/multirun/2025-01-01/12-00-00")              # doctest: +SKIP
    >>> sweep.summary.pivot_table("aoc", "model.faithfulness", "intervention")  # doctest: +SKIP

`run` takes the same overrides as the command line (a list of `key=value` strings, or a dict
{key: value}), composes conf/ with Hydra's compose API, checks the overrides as `cotfaith` does
(a typo fails naming the key), runs cotfaith.runner.run_async and writes exactly what a CLI run
writes (records, traces, summary, figures, report.html, run.json, .hydra/). Inside a running
event loop (Jupyter), the run goes to a worker thread, so it works there as in a script. Runs
share the request cache as CLI runs do (cache.path, relative to `launch_dir`).

`load_run` reads a run folder (a CLI run, a `run()` result, a multirun job) or a whole multirun
folder (every job, the overrides of each as columns) into the same `Result`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["Result", "load_run", "run", "to_overrides"]


@dataclass
class Result:
    """What a run (or every job of a multirun) wrote, as pandas tables.

    For a multirun, `records` and `summary` hold every job's rows, led by a `job` column (the
    job's folder name) and one column per overridden key (`model.faithfulness`, or
    `override.<key>` where the key clashes with a column); `jobs` has one row per job.
    """

    path: Path
    """The run folder (or the multirun folder)."""
    records: pd.DataFrame
    """records.jsonl: one row per question x CoT sample x condition point."""
    summary: pd.DataFrame
    """summary.csv: per task and intervention (empty if the run wrote none)."""
    run: dict[str, Any] = field(default_factory=dict)
    """run.json (call statistics, strategies); for a multirun {job: run.json}."""
    config: dict[str, Any] = field(default_factory=dict)
    """The composed config (.hydra/config.yaml); for a multirun {job: config}."""
    overrides: list[str] = field(default_factory=list)
    """The overrides of the run (.hydra/overrides.yaml); for a multirun, the sweep's."""
    jobs: pd.DataFrame | None = None
    """A multirun: one row per job (job, path, records, overrides as columns); else None."""

    @property
    def report(self) -> Path | None:
        """report.html of the run (or the sweep report of a multirun), if written."""
        path = self.path / "report.html"
        return path if path.is_file() else None

    @property
    def is_multirun(self) -> bool:
        return self.jobs is not None

    def __repr__(self) -> str:
        kind = f"multirun of {len(self.jobs)} jobs" if self.jobs is not None else "run"
        return (
            f"Result({kind} at {str(self.path)!r}: {len(self.records)} records, "
            f"{len(self.summary)} summary rows)"
        )


# ----------------------------------------------------------------------------- overrides
_BARE = re.compile(r"^[\w./:\-+*@]+$")


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        items = ",".join(f"{k}:{_format_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    text = str(value)
    if _BARE.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """Command-line overrides from a list (as is) or a dict: {"task.n_questions": 6,
    "intervention": ["truncation"], "+experiment": "lanham2023_smoke"} ->
    ["task.n_questions=6", "intervention=[truncation]", "+experiment=lanham2023_smoke"]."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise TypeError("overrides: a list of 'key=value' strings or a dict, not one string")
    if isinstance(overrides, Mapping):
        return [f"{key}={_format_value(value)}" for key, value in overrides.items()]
    return [str(o) for o in overrides]


# ----------------------------------------------------------------------------- run
def run(
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    *,
    launch_dir: str | Path | None = None,
    report: bool = True,
    allow_new_keys: bool = False,
) -> Result:
    """Run one experiment and return its tables.

    overrides: as on the command line, e.g. ["model.faithfulness=0.3", "+experiment=..."] or
        {"model.faithfulness": 0.3}; sweeps (a=1,2) are for `cotfaith -m` (or a loop here).
    out_dir: the run folder (default: the config's hydra.run.dir, outputs/<date>/<time>, under
        launch_dir).
    launch_dir: what relative paths (cache.path, prompts.path, out_dir) are taken from
        (default: the current folder), like the folder `cotfaith` is launched from.
    report: write summary.csv, figures/ and report.html (as the CLI does).
    allow_new_keys: let `+key=value` add keys no schema declares (the CLI's --allow-new-keys).

    Raises cotfaith.errors.CotfaithError (ConfigError, BudgetExceeded, ...) with the CLI's
    one-line message; everything already paid for is in the cache and the records.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    from cotfaith.cli import CONFIG_DIR, check_overrides
    from cotfaith.errors import ConfigError
    from cotfaith.report import ReportSettings, write_report
    from cotfaith.runner import run_async
    from cotfaith.validate import credential_error

    lines = to_overrides(overrides)
    secret = credential_error(lines)
    if secret is not None:  # before anything writes the overrides to disk
        raise ConfigError(secret)
    base = Path(launch_dir).expanduser() if launch_dir is not None else Path.cwd()
    base = base.resolve()
    check_overrides(lines, allow_new_keys=allow_new_keys)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="cli"):
        try:
            cfg = compose("config", overrides=lines, return_hydra_config=True)
        except Exception as e:  # Hydra's composition errors, as one line
            message = " ".join(str(e).split())
            if "sweep" in message.lower() or "ambiguous" in message.lower():
                message += " (run() runs one job: sweep with `cotfaith -m` or a loop)"
            raise ConfigError(message) from e
    if out_dir is None:
        out = base / str(OmegaConf.select(cfg, "hydra.run.dir"))
    else:
        out = Path(out_dir).expanduser()
        out = out if out.is_absolute() else base / out
    out = out.resolve()
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(base)
        cfg.hydra.job.override_dirname = ",".join(lines)
    job_cfg = copy.deepcopy(cfg)  # what Hydra hands the task function: no hydra node
    with read_write(job_cfg), open_dict(job_cfg):
        del job_cfg["hydra"]
    _save_hydra_files(out, job_cfg, cfg.hydra, lines)

    holder = HydraConfig.instance()
    before = holder.cfg
    holder.set_config(cfg)  # as under `cotfaith`: components may ask for the job's folder
    try:
        _run_coroutine(run_async(job_cfg, out, base, lines))
    finally:
        holder.cfg = before
    if report:
        write_report(out, ReportSettings.from_mapping(job_cfg.report))
    return load_run(out)


def _save_hydra_files(out: Path, job_cfg: Any, hydra_cfg: Any, lines: list[str]) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them for a CLI run
    (the report and `cotfaith-report` read them)."""
    from omegaconf import OmegaConf

    folder = out / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(job_cfg, folder / "config.yaml", resolve=False)
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml", resolve=False)
    OmegaConf.save(OmegaConf.create(list(lines)), folder / "overrides.yaml")


def _run_coroutine(coro: Any) -> Any:
    """asyncio.run, or, inside a running event loop (Jupyter), asyncio.run in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cotfaith") as pool:
        return pool.submit(asyncio.run, coro).result()


# ----------------------------------------------------------------------------- load
def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _load_single(path: Path) -> Result:
    from cotfaith.records import read_records

    records_path = path / "records.jsonl"
    records = read_records(records_path) if records_path.is_file() else pd.DataFrame()
    summary_path = path / "summary.csv"
    summary = pd.read_csv(summary_path) if summary_path.is_file() else pd.DataFrame()
    run_path = path / "run.json"
    info = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    config = _read_yaml(path / ".hydra" / "config.yaml") or {}
    overrides = [str(o) for o in (_read_yaml(path / ".hydra" / "overrides.yaml") or [])]
    return Result(path, records, summary, info, config, overrides)


def _with_overrides(frame: pd.DataFrame, job: str, values: dict[str, Any]) -> pd.DataFrame:
    frame = frame.copy()
    lead = {"job": job}
    for key, value in values.items():
        name = key if key not in frame.columns and key != "job" else f"override.{key}"
        lead[name] = value
    for i, (name, value) in enumerate(lead.items()):
        frame.insert(i, name, [value] * len(frame))
    return frame


def load_run(path: str | Path) -> Result:
    """Load a run folder, or a multirun folder (every job, its overrides as columns).

    A run folder holds records.jsonl (and, when finished, summary.csv and run.json); a
    multirun folder holds Hydra's multirun.yaml and one subfolder per job.

    `records` are the full records (`cotfaith.records.read_records`: every field, call logs
    and payloads included, about 2 KB of Python objects a record in memory). For a large run,
    `cotfaith.records.read_compact(path / "records.jsonl")` gives what the report reads (the
    columns the metrics use and the calls as flat arrays, about 10x smaller);
    `summarize(c.rows, calls=c.calls)` then gives the summary.
    """
    from cotfaith.report.sweep import find_jobs, is_multirun, parse_overrides

    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    if (path / "records.jsonl").is_file():
        return _load_single(path)
    if not is_multirun(path):
        raise FileNotFoundError(
            f"{path}: neither a run folder (records.jsonl) nor a multirun folder (jobs)"
        )
    loaded = [_load_single(job) for job in find_jobs(path)]
    values = [parse_overrides(r.overrides) for r in loaded]
    keys = list(dict.fromkeys(k for v in values for k in v))  # every job's overrides
    records, summaries, rows = [], [], []
    for result, vals in zip(loaded, values, strict=True):
        job = result.path.name
        picked = {k: vals.get(k) for k in keys}
        records.append(_with_overrides(result.records, job, picked))
        summaries.append(_with_overrides(result.summary, job, picked))
        rows.append(
            {"job": job, "path": str(result.path), "records": len(result.records), **picked}
        )
    sweep = _read_yaml(path / "multirun.yaml") or {}
    task_overrides = ((sweep.get("hydra") or {}).get("overrides") or {}).get("task") or []
    return Result(
        path=path,
        records=_concat(records),
        summary=_concat(summaries),
        run={r.path.name: r.run for r in loaded},
        config={r.path.name: r.config for r in loaded},
        overrides=[str(o) for o in task_overrides],
        jobs=pd.DataFrame(rows),
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
