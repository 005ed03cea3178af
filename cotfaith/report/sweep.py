"""One report over the jobs of a Hydra multirun: `cotfaith-report MULTIRUN_DIR`, and at the end of
every `cotfaith -m ...` through the Hydra callback `SweepReportCallback` (conf/config.yaml).

Written into the multirun folder:

- `sweep_summary.csv`: one row per job x task x method x intervention. The summary columns are
  exactly the job's own summary (cotfaith.metrics.summarize with the job's report settings), led
  by `job` (the job's folder), `label` (the overrides that vary across jobs), `status`, and one
  column per overridden key read from the job's `.hydra/overrides.yaml` (a key that clashes with a
  summary column, such as `task` from `task=aqua`, is named `override.task`).
- `sweep_jobs.csv`: every job with its status: `ok`, `stopped` (run.json says `stopped_by`, or
  there is no run.json: killed), `incomplete` (no summary.csv: the job did not finish) or
  `failed` (no records). Only `ok` jobs enter the figures and the comparisons.
- `sweep_comparisons.csv`: paired differences between jobs on their shared questions (AOC and
  accuracy; cotfaith.paired), with a cluster-bootstrap CI, a p-value and the p-value adjusted
  across all comparisons shown (Holm by default, or Benjamini-Hochberg).
- `figures/`: AOC with CI per task, one marker per job (Lanham et al. 2023, Table 2 / Fig. 2);
  AOC and answers changed at k=0 against model size, when sizes are known; accuracy against AOC
  per task with the Pareto frontier (Radhakrishnan et al. 2023).
- `report.html`: all of it, self-contained.

Model sizes (billions of parameters) come from, in order: an explicit mapping (model name ->
size; `cotfaith-report --sizes sizes.yaml` or `--sizes name=7B,other=70B`, or the callback's
`sizes` option), a `model.size` key in the job's config, or the model name itself (`...-7B-...`,
`llama-3.1-70b`, `...-350m`).

Jobs are read one at a time; only their summaries and small per-question tables are kept, so
memory does not grow with the size of the jobs' records.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cotfaith.metrics import summarize
from cotfaith.paired import adjust_pvalues, paired_from_tables, statistics
from cotfaith.records import CallLog, read_compact
from cotfaith.report import ReportSettings
from cotfaith.report.html import _table_html, render_report

log = logging.getLogger(__name__)

__all__ = [
    "Job",
    "SweepPaths",
    "SweepReportCallback",
    "find_jobs",
    "is_multirun",
    "parse_overrides",
    "parse_size",
    "write_sweep_report",
]

OK, STOPPED, INCOMPLETE, FAILED = "ok", "stopped", "incomplete", "failed"
# shown in the HTML table (the CSV has every column)
_SHOWN = (
    "label",
    "status",
    "task",
    "method",
    "intervention",
    "n_questions",
    "n_cots",
    "accuracy_cot",
    "accuracy_no_cot",
    "aoc",
    "aoc_ci_low",
    "aoc_ci_high",
    "changed_at_k0",
    "chance_agreement",
    "parse_failures",
    "failed_calls",
    "calls",
    "cache_hits",
    "cost_usd",
)


# ----------------------------------------------------------------------------- jobs
def _job_markers(path: Path) -> bool:
    return (path / "records.jsonl").is_file() or (path / ".hydra" / "overrides.yaml").is_file()


def is_multirun(path: Path) -> bool:
    """A multirun folder: Hydra's multirun.yaml, or job subfolders (records / overrides)."""
    path = Path(path)
    if not path.is_dir() or (path / "records.jsonl").is_file():
        return False
    if (path / "multirun.yaml").is_file():
        return True
    return any(_job_markers(p) for p in path.iterdir() if p.is_dir())


def _order(p: Path) -> tuple[int, int | str]:
    return (0, int(p.name)) if p.name.isdigit() else (1, p.name)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders of a multirun, in job-number order."""
    subdirs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted((p for p in subdirs if _job_markers(p) or (p / "run.json").is_file()), key=_order)


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) else text


def parse_overrides(lines: list[str]) -> dict[str, Any]:
    """Hydra override strings -> {key: value} (`+k=v`, `++k=v` give k; `~k` gives None)."""
    out: dict[str, Any] = {}
    for line in lines:
        text = str(line).strip()
        if text.startswith("~"):
            out[text[1:].split("=", 1)[0]] = None
            continue
        key, _, value = text.lstrip("+").partition("=")
        out[key] = _scalar(value)
    return out


_SIZE_UNITS = {"b": 1.0, "m": 1e-3, "t": 1e3, "k": 1e-6}
_SIZE_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([bBmM])(?![a-zA-Z0-9])")


def parse_size(value: Any) -> float | None:
    """A model size in billions of parameters: 7, "7B", "350M", "1.5b" -> 7.0, 7.0, 0.35, 1.5."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bBmMtTkK]?)\s*", str(value))
    if not m:
        return None
    return float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]


def size_from_name(name: str) -> float | None:
    """The size a model's name states (`Qwen2.5-7B-Instruct` -> 7, `llama-3.1-70b` -> 70)."""
    base = str(name).rsplit("/", 1)[-1]
    found = _SIZE_IN_NAME.findall(base.replace("_", "-"))
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * _SIZE_UNITS[unit.lower()]


def load_sizes(spec: str | Path | Mapping[str, Any] | None) -> dict[str, float]:
    """A model -> size mapping from a mapping, a YAML/JSON file, or `name=7B,other=70B`."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        raw = dict(spec)
    elif Path(str(spec)).is_file():
        raw = yaml.safe_load(Path(str(spec)).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{spec}: sizes must be a mapping of model name to size")
    else:
        raw = {}
        for part in str(spec).split(","):
            name, sep, size = part.partition("=")
            if not sep:
                raise ValueError(f"--sizes: {part!r} is not name=size (or a file)")
            raw[name.strip()] = size.strip()
    out = {}
    for name, size in raw.items():
        value = parse_size(size)
        if value is None:
            raise ValueError(f"sizes: {size!r} for {name!r} is not a size (7, 7B, 350M)")
        out[str(name)] = value
    return out


@dataclass
class Job:
    name: str
    path: Path
    overrides: dict[str, Any]
    status: str = OK
    reason: str = ""
    n_records: int = 0
    label: str = ""
    size: float | None = None
    tables: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict)
    """(task, method, statistic) -> per-question (num, den), for the paired comparisons."""


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None


def _status(job_dir: Path, n_records: int) -> tuple[str, str]:
    import json

    run: dict[str, Any] = {}
    if (job_dir / "run.json").is_file():
        try:
            run = json.loads((job_dir / "run.json").read_text(encoding="utf-8"))
        except ValueError:
            run = {}
    stopped = run.get("stopped_by")
    if n_records == 0:
        return FAILED, f"no records{f' (stopped by: {stopped})' if stopped else ''}"
    if stopped:
        return STOPPED, f"stopped early: {stopped}"
    if not (job_dir / "run.json").is_file():
        return STOPPED, "no run.json: the job was killed (or is still running)"
    if not (job_dir / "summary.csv").is_file():
        return INCOMPLETE, "no summary.csv: the job did not finish its report"
    return OK, ""


# ----------------------------------------------------------------------------- the report
@dataclass
class SweepPaths:
    summary: Path
    jobs: Path
    comparisons: Path
    report: Path
    figures: dict[str, Path | None]


def _stats_of(settings: ReportSettings) -> Any:
    make = getattr(settings, "stats", None)
    return make() if callable(make) else None


def _summarize(
    records: pd.DataFrame, settings: ReportSettings, calls: CallLog | None = None
) -> pd.DataFrame:
    stats = _stats_of(settings)
    if stats is not None:
        return summarize(records, stats=stats, calls=calls)
    return summarize(
        records, n_boot=settings.n_bootstrap, ci=settings.ci, seed=settings.seed, calls=calls
    )


def _job_settings(job_dir: Path, flags: Mapping[str, Any]) -> ReportSettings:
    cfg = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    settings = ReportSettings.from_mapping(cfg.get("report") or {})
    return dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})


def _labels(jobs: list[Job]) -> None:
    keys = sorted({k for j in jobs for k in j.overrides})
    varying = [k for k in keys if len({repr(j.overrides.get(k)) for j in jobs}) > 1]
    for j in jobs:
        parts = [f"{k}={j.overrides.get(k)}" for k in varying]
        j.label = ", ".join(parts) if parts else f"job {j.name}"
    seen: dict[str, int] = {}
    for j in jobs:  # two jobs with the same overrides (a repeated sweep): keep them apart
        seen[j.label] = seen.get(j.label, 0) + 1
    for j in jobs:
        if seen[j.label] > 1:
            j.label = f"{j.label} [{j.name}]"


def _override_columns(jobs: list[Job], taken: set[str]) -> dict[str, str]:
    keys = sorted({k for j in jobs for k in j.overrides})
    return {k: (f"override.{k}" if k in taken else k) for k in keys}


def _job_size(job_dir: Path, models: list[str], sizes: Mapping[str, float]) -> float | None:
    for name in models:
        if name in sizes:
            return sizes[name]
    cfg = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    size = parse_size((cfg.get("model") or {}).get("size"))
    if size is not None:
        return size
    for name in models:
        size = size_from_name(name)
        if size is not None:
            return size
    return None


def _read_job(
    job: Job, flags: Mapping[str, Any], sizes: Mapping[str, float]
) -> pd.DataFrame | None:
    """Summarise one job and keep its per-question tables; the records are dropped after."""
    path = job.path / "records.jsonl"
    compact = read_compact(path) if path.is_file() else None
    records = compact.rows if compact is not None else pd.DataFrame()
    job.n_records = len(records)
    job.status, job.reason = _status(job.path, job.n_records)
    if records.empty:
        return None
    settings = _job_settings(job.path, flags)
    summary = _summarize(records, settings, compact.calls)
    del compact
    job.size = _job_size(job.path, sorted(set(summary["model"].astype(str))), sizes)
    records = records.assign(method=records["method"].fillna("cot"))
    for (task, method), rows in records.groupby(["task", "method"], sort=True):
        for name, stat in statistics(getattr(settings, "unparseable", "drop")).items():
            if stat.intervention not in set(rows["intervention"]):
                continue
            table = stat.table(rows)
            if len(table):
                job.tables[(str(task), str(method), name)] = table
    return summary


def _pairs(jobs: list[Job], compare: str) -> list[tuple[Job, Job]]:
    if compare == "auto":
        compare = "all" if len(jobs) <= 6 else "baseline"
    if compare == "all":
        return list(combinations(jobs, 2))
    if compare == "baseline":
        return [(j, jobs[0]) for j in jobs[1:]]
    if compare == "adjacent":
        return list(zip(jobs[1:], jobs[:-1], strict=False))
    if compare == "none":
        return []
    raise ValueError(f"--compare: {compare!r} is not one of auto, all, baseline, adjacent, none")


def compare_jobs(
    jobs: list[Job],
    *,
    compare: str = "auto",
    adjust: str = "holm",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired differences (job A - job B) of each statistic, per task and method."""
    rows = []
    for a, b in _pairs(jobs, compare):
        for key in sorted(set(a.tables) & set(b.tables)):
            task, method, name = key
            r = paired_from_tables(a.tables[key], b.tables[key], n_boot, ci, seed)
            if r.n_shared == 0:
                continue
            rows.append(
                {
                    "statistic": name,
                    "task": task,
                    "method": method,
                    "job_a": a.name,
                    "job_b": b.name,
                    "label_a": a.label,
                    "label_b": b.label,
                    "n_shared": r.n_shared,
                    "estimate_a": r.estimate_a,
                    "estimate_b": r.estimate_b,
                    "diff": r.diff,
                    "diff_ci_low": r.low,
                    "diff_ci_high": r.high,
                    "p": r.p,
                }
            )
    columns = [
        "statistic",
        "task",
        "method",
        "job_a",
        "job_b",
        "label_a",
        "label_b",
        "n_shared",
        "estimate_a",
        "estimate_b",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "p",
        f"p_{adjust}",
    ]
    out = pd.DataFrame(rows, columns=columns[:-1])
    out[f"p_{adjust}"] = adjust_pvalues(out["p"].to_numpy(float), adjust) if len(out) else []
    return out[columns]


# ----------------------------------------------------------------------------- figures
def _aoc_by_job(table: pd.DataFrame, path: Path) -> Path | None:
    data = table[table["aoc"].notna()] if "aoc" in table else table.iloc[0:0]
    if data.empty:
        return None
    frame = data.assign(model=data["label"].astype(str))
    if frame["method"].nunique() > 1:
        frame["model"] = frame["model"] + " · " + frame["method"].astype(str)
    from cotfaith.report.figures import plot_aoc_summary  # (drawing only: see write_report)

    return plot_aoc_summary(frame, path)


def _series(frame: pd.DataFrame) -> pd.Series:
    name = frame["task"].astype(str)
    if frame["method"].nunique() > 1:
        name = name + " · " + frame["method"].astype(str)
    return name


def _scaling(table: pd.DataFrame, sizes: dict[str, float], path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    from cotfaith.report.figures import _save

    rows = table[(table["intervention"] == "truncation") & table["job"].isin(sizes)]
    if rows.empty or rows["aoc"].notna().sum() == 0:
        return None
    rows = rows.assign(size=rows["job"].map(sizes), _series=_series(rows))
    panels = [("aoc", "AOC (early answering)")]
    if "changed_at_k0" in rows and rows["changed_at_k0"].notna().any():
        panels.append(("changed_at_k0", "answers changed at k=0 (share)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (col, title) in zip(axes[0], panels, strict=True):
        for i, (name, part) in enumerate(rows.groupby("_series", sort=True)):
            part = part.sort_values("size")
            y = part[col].astype(float).to_numpy()
            lo_col, hi_col = f"{col}_ci_low", f"{col}_ci_high"
            if lo_col in part and hi_col in part:
                lo = np.nan_to_num(y - part[lo_col].astype(float).to_numpy(), nan=0.0)
                hi = np.nan_to_num(part[hi_col].astype(float).to_numpy() - y, nan=0.0)
                err = np.clip(np.vstack([lo, hi]), 0, None)
            else:
                err = None
            ax.errorbar(part["size"], y, yerr=err, marker="o", capsize=3, color=f"C{i}", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("model size (billions of parameters)")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if len(labels) > 1:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (higher is better on both),
    sorted by the first axis."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = np.any(
            (points[:, 0] >= x) & (points[:, 1] >= y) & ((points[:, 0] > x) | (points[:, 1] > y))
        )
        if not dominated:
            keep.append(i)
    keep_arr = np.array(keep, dtype=int)
    return keep_arr[np.argsort(points[keep_arr, 0], kind="stable")] if len(keep) else keep_arr


def _pareto(table: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    from cotfaith.report.figures import _save

    need = {"aoc", "accuracy_cot"}
    if not need <= set(table.columns):
        return None
    rows = table[(table["intervention"] == "truncation")].dropna(subset=list(need))
    if rows.empty:
        return None
    tasks = sorted(rows["task"].astype(str).unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.0), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        part = rows[rows["task"].astype(str) == task]
        pts = part[["accuracy_cot", "aoc"]].to_numpy(float)
        ax.scatter(pts[:, 0], pts[:, 1], color="C0", zorder=3)
        front = pareto_front(pts)
        if len(front) > 1:
            ax.plot(pts[front, 0], pts[front, 1], "--", color="C3", label="Pareto frontier")
        labels = part["label"].astype(str)
        if part["method"].nunique() > 1:
            labels = labels + " · " + part["method"].astype(str)
        if len(part) <= 12:
            for (x, y), text in zip(pts, labels, strict=True):
                ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("accuracy with CoT")
        ax.set_ylabel("AOC (early answering)")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- HTML
def _section(title: str, explanation: str, table: pd.DataFrame) -> str:
    text = f'<p class="explain">{html.escape(explanation)}</p>' if explanation else ""
    return f"<section><h2>{html.escape(title)}</h2>\n{text}\n{_table_html(table)}</section>\n"


_COMPARE_TEXT = (
    "Job A minus job B on the questions both answered (n shared), per task and method: AOC of "
    "early answering (aoc), of adding mistakes, and accuracy with and without CoT. The CI is a "
    "cluster bootstrap that draws the same questions for both jobs; p tests a difference of 0 "
    "(shifted bootstrap) and is adjusted across every comparison in this table ({adjust})."
)


def _html(
    sweep_dir: Path,
    table: pd.DataFrame,
    jobs: list[Job],
    comparisons: pd.DataFrame,
    figures: dict[str, Path | None],
    adjust: str,
) -> str:
    shown = table[[c for c in _SHOWN if c in table.columns]].rename(columns={"label": "job"})
    notes = [f"{len(jobs)} jobs; {sum(j.status == OK for j in jobs)} finished."]
    for j in jobs:
        if j.status != OK:
            notes.append(f"job {j.name} ({j.label}): {j.status}: {j.reason}")
    if any(j.status != OK for j in jobs):
        notes.append("Only finished jobs enter the figures and the comparisons.")
    config_text = None
    if (sweep_dir / "multirun.yaml").is_file():
        config_text = (sweep_dir / "multirun.yaml").read_text(encoding="utf-8")
    page = render_report(
        title=f"cotfaith sweep: {sweep_dir.resolve().parent.name}/{sweep_dir.resolve().name}",
        summary=shown,
        figures=figures,
        config_yaml=config_text,
        notes=notes,
    )
    jobs_table = pd.DataFrame(
        [
            {
                "job": j.name,
                "overrides": ", ".join(f"{k}={v}" for k, v in j.overrides.items()),
                "status": j.status,
                "records": j.n_records,
                "size_b": j.size,
                "why": j.reason,
            }
            for j in jobs
        ]
    )
    extra = _section("Jobs", "Every job of the sweep and how it ended.", jobs_table)
    if len(comparisons):
        shown_cmp = comparisons.drop(columns=["job_a", "job_b"]).rename(
            columns={"label_a": "job A", "label_b": "job B"}
        )
        extra += _section(
            "Paired comparisons", _COMPARE_TEXT.format(adjust=adjust.upper()), shown_cmp
        )
    marker = "<section><h2>Summary</h2>"
    if marker in page:
        return page.replace(marker, extra + marker, 1)
    return page.replace("</body>", extra + "</body>", 1)


# ----------------------------------------------------------------------------- entry point
def write_sweep_report(
    sweep_dir: Path,
    *,
    n_bootstrap: int | None = None,
    ci: float | None = None,
    seed: int | None = None,
    sizes: str | Path | Mapping[str, Any] | None = None,
    compare: str = "auto",
    adjust: str = "holm",
) -> SweepPaths:
    """Write sweep_summary.csv, sweep_jobs.csv, sweep_comparisons.csv, figures/ and report.html
    into `sweep_dir`. Flags left None use each job's own report settings."""
    sweep_dir = Path(sweep_dir)
    if adjust not in ("holm", "bh"):
        raise ValueError(f"--adjust: {adjust!r} is not holm or bh")
    _pairs([], compare)  # validate early
    size_map = load_sizes(sizes)
    job_dirs = find_jobs(sweep_dir)
    if not job_dirs:
        raise FileNotFoundError(f"{sweep_dir}: no job folders here (is this a multirun folder?)")
    flags = {"n_bootstrap": n_bootstrap, "ci": ci, "seed": seed}
    jobs: list[Job] = []
    parts: list[tuple[Job, pd.DataFrame]] = []
    for job_dir in job_dirs:
        overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml") or []
        job = Job(job_dir.name, job_dir, parse_overrides(list(overrides)))
        summary = _read_job(job, flags, size_map)  # one job's records in memory at a time
        jobs.append(job)
        if summary is not None:
            parts.append((job, summary))
    _labels(jobs)
    taken = {str(c) for _, s in parts for c in s.columns} | {"job", "label", "status"}
    columns = _override_columns(jobs, taken)
    frames = []
    for job, summary in parts:
        lead = {"job": job.name, "label": job.label, "status": job.status}
        lead.update({col: job.overrides.get(key) for key, col in columns.items()})
        front = pd.DataFrame([lead] * len(summary), index=summary.index)
        frames.append(pd.concat([front, summary], axis=1))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    summary_path = sweep_dir / "sweep_summary.csv"
    table.to_csv(summary_path, index=False)
    jobs_path = sweep_dir / "sweep_jobs.csv"
    pd.DataFrame(
        [
            {
                "job": j.name,
                "label": j.label,
                "status": j.status,
                "reason": j.reason,
                "records": j.n_records,
                "size_b": j.size,
                **{columns[k]: v for k, v in j.overrides.items()},
            }
            for j in jobs
        ]
    ).to_csv(jobs_path, index=False)

    finished = [j for j in jobs if j.status == OK]
    first = finished[0].path if finished else job_dirs[0]
    base = _job_settings(first, flags)
    comparisons = compare_jobs(
        finished,
        compare=compare,
        adjust=adjust,
        n_boot=base.n_bootstrap,
        ci=base.ci,
        seed=base.seed,
    )
    comparisons_path = sweep_dir / "sweep_comparisons.csv"
    comparisons.to_csv(comparisons_path, index=False)

    fig_dir = sweep_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    ok_rows = table[table["status"] == OK] if len(table) else table
    figures: dict[str, Path | None] = {}
    if len(ok_rows):
        aoc_fig = _aoc_by_job(ok_rows, fig_dir / "aoc_by_job.png")
        figures["AOC by task, one marker per job"] = aoc_fig
        sizes_by_job = {j.name: j.size for j in finished if j.size is not None}
        scaling = _scaling(ok_rows, sizes_by_job, fig_dir / "aoc_vs_size.png")
        if scaling is not None:
            figures["AOC and answers changed at k=0 against model size"] = scaling
        pareto = _pareto(ok_rows, fig_dir / "pareto.png")
        if pareto is not None:
            figures["Accuracy against AOC (Pareto frontier)"] = pareto
    figures = {k: v for k, v in figures.items() if v is not None}
    report_path = sweep_dir / "report.html"
    report_path.write_text(
        _html(sweep_dir, table, jobs, comparisons, figures, adjust), encoding="utf-8"
    )
    return SweepPaths(summary_path, jobs_path, comparisons_path, report_path, figures)


# ----------------------------------------------------------------------------- Hydra callback
try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - Hydra is a dependency
    _Callback = object  # type: ignore[misc,assignment]


class SweepReportCallback(_Callback):  # type: ignore[misc,valid-type]
    """At the end of a multirun, write one report over all its jobs (single runs: nothing).

    Options (conf/config.yaml, `hydra.callbacks.sweep_report`): `enabled`, `compare`
    (auto | all | baseline | adjacent | none), `adjust` (holm | bh), `sizes` (a mapping of model
    name to size in billions, or a YAML file). A failure is logged, never raised: the jobs'
    own results are already written.
    """

    def __init__(
        self,
        enabled: bool = True,
        compare: str = "auto",
        adjust: str = "holm",
        sizes: Any = None,
    ) -> None:
        self.enabled = enabled
        self.compare = compare
        self.adjust = adjust
        self.sizes = sizes

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            sizes = self.sizes
            if sizes is not None and not isinstance(sizes, (str, Path)):
                from omegaconf import OmegaConf

                sizes = OmegaConf.to_container(sizes) if OmegaConf.is_config(sizes) else sizes
            paths = write_sweep_report(
                sweep_dir, sizes=sizes or None, compare=self.compare, adjust=self.adjust
            )
            log.info("sweep report over %s: %s", sweep_dir, paths.report)
        except Exception as e:  # noqa: BLE001 - never fail a finished sweep over its report
            log.warning("cotfaith: the sweep report could not be written: %s", e)
