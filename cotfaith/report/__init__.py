"""From records to what a person reads: summary.csv, figures/ and a self-contained report.html.

Reads only the files a run wrote (records.jsonl, traces.jsonl, .hydra/config.yaml), so the same
code serves at the end of a run and later from `cotfaith-report RUN_DIR`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Reports are drawn headless with Agg whatever the environment says: an MPLBACKEND matplotlib
# does not know makes its import fail (before figures.py could choose Agg)
os.environ["MPLBACKEND"] = "Agg"

import pandas as pd  # noqa: E402
import yaml

from cotfaith.interventions.base import Section, StatSettings, intervention_class
from cotfaith.metrics import answered, label_runs, summarize
from cotfaith.records import REFERENCE, read_compact
from cotfaith.report.html import render_report

log = logging.getLogger(__name__)


@dataclass
class ReportSettings:
    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    min_cots_per_length: int = 3
    n_examples: int = 3
    ci_method: str = "bca"
    unparseable: str = "drop"

    def stats(self) -> StatSettings:
        return StatSettings(
            n_bootstrap=self.n_bootstrap,
            ci=self.ci,
            seed=self.seed,
            min_cots_per_length=self.min_cots_per_length,
            ci_method=self.ci_method,
            unparseable=self.unparseable,
        )

    @classmethod
    def from_mapping(cls, values: Any) -> ReportSettings:
        """From a `report:` config section; unknown keys (a newer config) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: values[k] for k in (values or {}) if k in known})


@dataclass
class ReportPaths:
    summary: Path
    report: Path
    figures: dict[str, Path | None]


def _load_config(run_dir: Path) -> tuple[str | None, dict[str, Any]]:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        return None, {}
    text = path.read_text(encoding="utf-8")
    return text, yaml.safe_load(text) or {}


def _examples(run_dir: Path, n: int) -> list[dict[str, str]]:
    path = run_dir / "traces.jsonl"
    if not path.exists() or n <= 0:
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                t = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed run
            if t.get("sample") != 0:
                continue
            letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            out.append(
                {
                    "question": t["question"],
                    "choices": "\n".join(f"({letters[i]}) {c}" for i, c in enumerate(t["choices"])),
                    "cot": "\n".join(f"{i + 1}. {s}" for i, s in enumerate(t["steps"])),
                    "answer": f"{t['answer']} (gold {t['gold']})",
                }
            )
            if len(out) >= n:
                break
    return out


def _run_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _run_notes(run_dir: Path) -> list[str]:
    """What the run itself reported: backend notices, retries, failed calls."""
    path = run_dir / "run.json"
    if not path.exists():
        return []
    run = json.loads(path.read_text(encoding="utf-8"))
    notes = []
    status = run.get("status", "ok")
    if status == "failed_calls":
        notes.append(
            f"THIS RUN FAILED: {run.get('failed_calls')} of {run.get('calls')} model calls "
            f"failed for good ({run.get('answers')} answers read); the numbers below cover only "
            "what succeeded. Run the same command again to retry the failed calls."
        )
    elif status in ("stopped", "interrupted"):
        notes.append(
            f"THIS RUN DID NOT FINISH ({status}: {run.get('stopped_by', '')}); the numbers "
            "below cover the records written before it stopped."
        )
    notes += list(run.get("notices", []))
    if run.get("retries"):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(run.get("retry_reasons", {}).items()))
        notes.append(f"{run['retries']} calls were retried ({reasons}).")
    if run.get("failed_calls"):
        notes.append(
            f"{run['failed_calls']} calls failed after every retry: they are recorded "
            "as call_failed, left out of every metric, and retried by running again."
        )
    return notes


_RULE_TEXT = {
    "drop": "they are left out of curves (report.unparseable=drop) and never count as agreement",
    "disagree": "they count as disagreement in curves (report.unparseable=disagree)",
    "agree": "they count as agreement in curves (report.unparseable=agree)",
}


def _notes(
    summary: pd.DataFrame, records: pd.DataFrame, config: dict[str, Any], rule: str = "drop"
) -> list[str]:
    notes = []
    for row in summary.itertuples():
        if row.parse_failures:
            notes.append(
                f"{row.task}/{row.intervention}: {row.parse_failures} answers could not be "
                "read (unparseable, low letter mass, or a new turn after the prefill); "
                f"{_RULE_TEXT.get(rule, _RULE_TEXT['drop'])}."
            )
        if getattr(row, "no_reference", 0) and row.no_reference == row.no_reference:
            notes.append(
                f"{row.task}/{row.intervention}: {int(row.no_reference)} rows whose "
                "complete-CoT answer was unparseable are left out of the curves."
            )
        cut = getattr(row, "cut_off_cots", 0)
        if row.intervention == REFERENCE and cut and cut == cut:
            notes.append(
                f"{row.task}: {int(cut)} CoTs stopped at max_tokens and may lack their "
                "conclusion (raise sampling.max_tokens)."
            )
    small = summary[summary.get("small_n", pd.Series(False, index=summary.index)).fillna(False)]
    for task in sorted(set(small["task"])):
        n = int(small[small["task"] == task]["n_questions"].max())
        notes.insert(
            0,
            f"{task}: only {n} questions: bootstrap intervals undercover below ~30 questions; "
            "treat them as rough.",
        )
    for row in summary.itertuples():
        if getattr(row, "unread_points", 0) and row.unread_points == row.unread_points:
            notes.append(
                f"{row.task}/{row.intervention}: {int(row.unread_points)} curve points could "
                f"not be read; AOC {row.aoc_if_drop:.3f} if dropped (default), "
                f"{row.aoc_if_disagree:.3f} if counted as disagreement, {row.aoc_if_agree:.3f} "
                "if counted as agreement."
            )
        missing = getattr(row, "cots_missing_endpoint", 0)
        if missing and missing == missing:
            notes.append(
                f"{row.task}/{row.intervention}: {int(missing)} CoTs lack an endpoint "
                "(k = 0 or the end) and are left out of the curve."
            )
    if "subtask" in records and records["subtask"].notna().any():
        for task, part in records[records["subtask"].notna()].groupby("task"):
            counts = part.groupby("subtask")["question_id"].nunique()
            notes.append(
                f"{task}: {len(counts)} subtasks: "
                + ", ".join(f"{name} ({n} questions)" for name, n in counts.items())
            )
    strategies = sorted(set(records["answer_strategy"].dropna()))
    segmenters = sorted(set(records["segmenter"].dropna()))
    notes.append(
        f"Answers read by: {', '.join(strategies)}; CoT steps split by: "
        f"{', '.join(segmenters)} (the segmenter changes the numbers)."
    )
    if "letter_mass" in records and records["letter_mass"].notna().any():
        ok = answered(records)
        mass = ok.groupby("answer_strategy")["letter_mass"].median().dropna()
        notes.append(
            "Median probability on the choice letters (logprob read-out): "
            + ", ".join(f"{k}: {v:.3f}" for k, v in mass.items())
            + "; answers below answer.min_letter_mass are recorded as low_mass."
        )
    model = config.get("model") or {}
    if model.get("provider") == "simulated":
        notes.append(_simulated_note(model, records, summary))
    return notes


def _simulated_note(model: dict[str, Any], records: pd.DataFrame, summary: pd.DataFrame) -> str:
    """What the organism's knobs imply for every measured column, beside the measurement."""
    from cotfaith.models.organism_theory import Knobs, implied_columns

    try:
        knobs = Knobs(**{k: model[k] for k in Knobs.__dataclass_fields__ if k in model})
    except Exception:  # noqa: BLE001 - an older run's config: no note rather than no report
        return "Simulated model organism (its knobs could not be read back)."
    ok = answered(records)
    ref = ok[(ok["intervention"] == REFERENCE) & ok["n_steps"].notna()]
    cots = [(int(n), int(m)) for n, m in zip(ref["n_steps"], ref["n_choices"], strict=True)]
    parts = []
    for iv, columns in implied_columns(knobs, cots).items():
        rows = summary[summary["intervention"] == iv]
        if rows.empty:
            continue
        for column, implied in columns.items():
            if column in rows and pd.notna(rows[column].iloc[0]):
                parts.append(f"{iv} {column} {rows[column].iloc[0]:.3f} (implied {implied:.3f})")
    text = (
        f"Simulated model organism: faithfulness={knobs.faithfulness}, accuracy with CoT="
        f"{knobs.accuracy_cot}, without CoT={knobs.accuracy_no_cot}, commitment "
        f"gamma={knobs.commitment_gamma}. Measured vs what its knobs imply: "
    )
    return text + ("; ".join(parts) or "nothing to compare") + "."


SHARED_HEADLINE = (
    "model",
    "task",
    "method",
    "intervention",
    "n_questions",
    "n_cots",
    "accuracy_cot",
    "accuracy_no_cot",
    "chance_agreement",
    "parse_failures",
    "failed_calls",
    "cost_usd",
)


def _headlines(records: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Each present intervention's own headline columns (the compact table's last column)."""
    out = {}
    for name in sorted(set(records["intervention"])):
        cls = intervention_class(str(name))
        out[str(name)] = tuple(getattr(cls, "headline", ())) if cls is not None else ()
    return out


def write_report(run_dir: Path, settings: ReportSettings | None = None) -> ReportPaths:
    """Write summary.csv, figures/*.png and report.html into `run_dir` from its records."""
    settings = settings or ReportSettings()
    run_dir = Path(run_dir)
    records_path = run_dir / "records.jsonl"
    if not records_path.exists():
        raise FileNotFoundError(f"{records_path}: no records here (is this a cotfaith run folder?)")
    # one pass, only the columns the summary and the sections read, calls as flat arrays
    compact = read_compact(records_path)
    records = compact.rows
    if records.empty:
        raise ValueError(f"{records_path}: the file holds no records")
    records = label_runs(records)  # one model name on two backends: two rows, never pooled
    summary = summarize(records, stats=settings.stats(), calls=compact.calls)
    del compact
    run_info = _run_info(run_dir)
    if run_info.get("skipped_records"):
        summary["skipped_records"] = int(run_info["skipped_records"])
    summary_path = run_dir / "summary.csv"
    summary.to_csv(summary_path, index=False)

    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    stats = settings.stats()
    # every intervention brings its own section (figures, tables, notes)
    sections: list[Section] = []
    for name in [REFERENCE, *sorted(set(records["intervention"]) - {REFERENCE})]:
        cls = intervention_class(str(name))
        part = cls.section(records, summary, fig_dir, stats) if cls is not None else None
        if part is not None:
            sections.append(part)
            for table, frame in part.tables.items():
                frame.to_csv(run_dir / f"{table}.csv", index=False)
    config_text, config = _load_config(run_dir)
    # seaborn and pyplot are imported here, not at the top: every `cotfaith` process loads this
    # package (the sweep callback), and one that fails before its report need not pay for them
    from cotfaith.report.figures import plot_length_histogram, plot_letter_mass

    figures: dict[str, Path | None] = {}
    ok = answered(records)
    ref = ok[ok["intervention"] == REFERENCE]
    if not ref.empty:
        figures["CoT length"] = plot_length_histogram(
            ref[["model", "task", "n_steps"]].astype({"n_steps": int}), fig_dir / "cot_lengths.png"
        )
    if "letter_mass" in ok and ok["letter_mass"].notna().any():
        figures["Probability on the choice letters"] = plot_letter_mass(
            ok[ok["letter_mass"].notna()], fig_dir / "letter_mass.png"
        )

    html_text = render_report(
        title=f"cotfaith report: {run_dir.resolve().parent.name}/{run_dir.resolve().name}",
        summary=summary,
        figures=figures,
        config_yaml=config_text,
        examples=_examples(run_dir, settings.n_examples),
        notes=[
            *_run_notes(run_dir),
            *_notes(summary, records, config, settings.unparseable),
            *(n for part in sections for n in part.notes),
        ],
        sections=sections,
        compact_columns=SHARED_HEADLINE,
        headlines=_headlines(records),
    )
    report_path = run_dir / "report.html"
    report_path.write_text(html_text, encoding="utf-8")
    return ReportPaths(summary_path, report_path, figures)
