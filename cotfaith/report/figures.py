"""Figures for a run: early-answering curves, CoT-length histogram, AOC summary.

Every function takes tidy frames from ``cotfaith.metrics``, writes one PNG and closes the figure,
because a sweep renders many figures in one process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

# Agg before pyplot: runs happen on headless machines and in tests, never in a GUI.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = [
    "DPI",
    "MIN_COTS",
    "curves_to_plot",
    "plot_aoc_summary",
    "plot_early_answering",
    "plot_length_histogram",
    "plot_accuracy_by_x",
    "plot_letter_mass",
]

DPI = 150
# A curve from one or two CoTs is a handful of 0/1 points: too noisy to draw.
MIN_COTS = 3

_CURVE_KEYS = ["model", "task", "intervention", "n_steps"]


def curves_to_plot(curves: pd.DataFrame, min_cots: int = MIN_COTS) -> pd.DataFrame:
    """Rows of ``curves`` whose (model, task, intervention, n_steps) cell has >= ``min_cots`` CoTs.

    A cell's CoT count is the largest ``n`` over its k values (all k of one length normally share
    the same n; taking the max keeps a curve whose k = n row lost a CoT to a parse failure).
    """
    if curves.empty:
        return curves.copy()
    keys = [c for c in _CURVE_KEYS if c in curves.columns]
    n_cots = curves.groupby(keys, dropna=False)["n"].transform("max")
    kept = curves.loc[n_cots >= min_cots]
    return kept.sort_values(keys + ["k"]).reset_index(drop=True)


def _facet_levels(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Row levels (model, plus intervention when several) and column levels (task)."""
    rows = sorted(frame["_row"].unique().tolist())
    cols = sorted(frame["task"].astype(str).unique().tolist())
    return rows, cols


def _with_row_label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``_row``: the model, suffixed with the intervention if the frame mixes several."""
    out = frame.copy()
    model = out["model"].astype(str) if "model" in out.columns else pd.Series("", index=out.index)
    if "intervention" in out.columns and out["intervention"].nunique(dropna=False) > 1:
        out["_row"] = model + " · " + out["intervention"].astype(str)
    else:
        out["_row"] = model
    out["task"] = out["task"].astype(str)
    return out


def _grid(
    n_rows: int, n_cols: int, *, width: float = 4.2, height: float = 3.4
) -> tuple[Figure, np.ndarray]:
    """A shared-axis subplot grid, always 2-D."""
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(width * n_cols + 1.6, height * n_rows + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    return fig, axes


def _facet_title(ax: Axes, row: str, col: str, n_rows: int, n_cols: int) -> None:
    """Title a facet with only the labels that vary across the grid."""
    parts = []
    if n_rows > 1 and row:
        parts.append(row)
    if n_cols > 1 or not parts:
        parts.append(col)
    ax.set_title(" | ".join(p for p in parts if p), fontsize=10)


def _save(fig: Figure, path: Path) -> Path:
    """Save as PNG (the report inlines it) and as PDF beside it (same name, .pdf: vector, for
    papers; fonts embedded as TrueType so text stays editable), then close the figure (runs
    produce many, pyplot keeps them alive). Returns the PNG's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
        with plt.rc_context({"pdf.fonttype": 42}):
            fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight", format="pdf")
    finally:
        plt.close(fig)
    return path


def _empty_figure(path: Path, message: str) -> Path:
    """A placeholder PNG so the report still shows why a figure is missing."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return _save(fig, path)


def plot_early_answering(
    curves: pd.DataFrame,
    path: Path,
    *,
    min_cots: int = MIN_COTS,
    xlabel: str = "% of reasoning sample provided",
    ylabel: str = "% same answer as complete CoT",
) -> Path:
    """Lanham et al. (2023) Fig. 3: % same answer vs % of the CoT kept, one line per CoT length.

    Facets: tasks in columns, models in rows (model · intervention when several interventions).
    Lengths with fewer than ``min_cots`` CoTs are dropped (see :func:`curves_to_plot`). When
    ``curves`` carries ``ci_low`` and ``ci_high`` (the cluster-bootstrap interval of each point,
    cotfaith.interventions.curves.rate_curves), each line gets a translucent band between them.
    """
    data = curves_to_plot(curves, min_cots)
    if data.empty:
        return _empty_figure(path, f"No CoT length has at least {min_cots} CoTs to plot.")
    data = _with_row_label(data)
    data["x"] = data["fraction"].astype(float) * 100.0
    data["y"] = data["same_rate"].astype(float) * 100.0
    bands = {"ci_low", "ci_high"} <= set(data.columns)
    lengths = sorted(int(v) for v in data["n_steps"].unique())
    # Sequential palette: short CoTs light, long CoTs dark, as in the paper's figure. Start the
    # ramp above 0 so the shortest length is still visible on white.
    ramp = sns.color_palette("viridis_r", n_colors=max(len(lengths), 2) + 1)[1:]
    colours = dict(zip(lengths, ramp, strict=False))

    rows, cols = _facet_levels(data)
    fig, axes = _grid(len(rows), len(cols))
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            cell = data[(data["_row"] == row) & (data["task"] == col)]
            if cell.empty:
                ax.text(50, 50, "no data", ha="center", va="center", color="0.5")
            for n_steps, line in cell.groupby("n_steps", sort=True):
                line = line.sort_values("x")
                if bands:
                    ax.fill_between(
                        line["x"],
                        line["ci_low"].astype(float) * 100.0,
                        line["ci_high"].astype(float) * 100.0,
                        color=colours[int(n_steps)],
                        alpha=0.15,
                        linewidth=0,
                    )
                ax.plot(
                    line["x"],
                    line["y"],
                    marker="o",
                    markersize=3.5,
                    linewidth=1.4,
                    color=colours[int(n_steps)],
                    label=str(int(n_steps)),
                )
            ax.set_xlim(-2, 102)
            ax.set_ylim(-3, 103)
            ax.grid(True, alpha=0.3)
            _facet_title(ax, row, col, len(rows), len(cols))
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)

    # One legend for the whole figure: every length with its colour, even if absent in a facet.
    handles = [
        Line2D([], [], color=colours[n], marker="o", markersize=3.5, linewidth=1.4) for n in lengths
    ]
    fig.legend(
        handles,
        [str(n) for n in lengths],
        title="CoT length (steps)",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        ncol=1 if len(lengths) <= 16 else 2,
    )
    fig.tight_layout()
    return _save(fig, path)


def plot_length_histogram(lengths: pd.DataFrame, path: Path) -> Path:
    """Histogram of CoT lengths (one bar per step count), tasks in columns, models in rows."""
    if lengths.empty:
        return _empty_figure(path, "No CoTs to count.")
    data = _with_row_label(lengths)
    data["n_steps"] = data["n_steps"].astype(int)
    rows, cols = _facet_levels(data)
    fig, axes = _grid(len(rows), len(cols), height=3.0)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            cell = data[(data["_row"] == row) & (data["task"] == col)]
            if cell.empty:
                ax.text(
                    0.5,
                    0.5,
                    "no data",
                    ha="center",
                    va="center",
                    color="0.5",
                    transform=ax.transAxes,
                )
            else:
                sns.histplot(x=cell["n_steps"], discrete=True, ax=ax, color="C0", shrink=0.85)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, axis="y", alpha=0.3)
            _facet_title(ax, row, col, len(rows), len(cols))
            ax.set_xlabel("CoT length (steps)" if i == len(rows) - 1 else "")
            ax.set_ylabel("CoTs" if j == 0 else "")
    fig.tight_layout()
    return _save(fig, path)


def _label(parts: Sequence[object]) -> str:
    """Join non-empty label parts."""
    return " · ".join(str(p) for p in parts if p is not None and str(p) != "")


def plot_aoc_summary(summary: pd.DataFrame, path: Path) -> Path | None:
    """AOC with its 95% CI per task (one marker per model/intervention), or None without AOC."""
    if summary.empty or "aoc" not in summary.columns:
        return None
    data = summary[summary["aoc"].notna()].copy()
    if data.empty:
        return None
    data["task"] = data["task"].astype(str)
    series_cols = [c for c in ("model", "intervention") if c in data.columns]
    # Only name what varies, so a single-model run is not labelled "m · truncation" everywhere.
    series_cols = [c for c in series_cols if data[c].nunique(dropna=False) > 1]
    data["_series"] = (
        [_label(vals) for vals in data[series_cols].itertuples(index=False, name=None)]
        if series_cols
        else ""
    )
    tasks = sorted(data["task"].unique().tolist())
    series = sorted(data["_series"].unique().tolist())
    palette = sns.color_palette("colorblind", n_colors=max(len(series), 1))
    # Dodge the series vertically within each task row so CIs do not overlap.
    span = min(0.6, 0.2 * (len(series) - 1))
    offsets = np.linspace(-span / 2, span / 2, len(series)) if len(series) > 1 else np.zeros(1)

    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(tasks) * max(1, len(series) ** 0.5) + 1.4))
    has_low = "aoc_ci_low" in data.columns
    has_high = "aoc_ci_high" in data.columns
    for s_idx, name in enumerate(series):
        part = data[data["_series"] == name]
        ys = [tasks.index(t) + offsets[s_idx] for t in part["task"]]
        xs = part["aoc"].astype(float).to_numpy()
        low = part["aoc_ci_low"].astype(float).to_numpy() if has_low else np.full_like(xs, np.nan)
        high = (
            part["aoc_ci_high"].astype(float).to_numpy() if has_high else np.full_like(xs, np.nan)
        )
        # Missing CI bounds draw as zero-length bars rather than dropping the point.
        err = np.vstack([np.nan_to_num(xs - low, nan=0.0), np.nan_to_num(high - xs, nan=0.0)])
        ax.errorbar(
            xs,
            ys,
            xerr=np.clip(err, 0, None),
            fmt="o",
            color=palette[s_idx],
            capsize=3,
            markersize=5,
            label=name or None,
        )
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(tasks)
    ax.set_ylim(len(tasks) - 0.5, -0.5)  # first task on top
    upper = np.nanmax(
        np.concatenate(
            [data["aoc"].astype(float).to_numpy()]
            + ([data["aoc_ci_high"].astype(float).to_numpy()] if has_high else [])
        )
    )
    # AOC lives in [0, 1] but is often < 0.2; zoom in while keeping 0 as the anchor.
    right = min(1.0, max(0.1, math.ceil(upper * 1.15 * 20) / 20))
    # A little room left of 0 so a CI touching 0 is not hidden by the spine.
    ax.set_xlim(-0.02 * right, right)
    ax.set_xlabel("AOC (area over the curve) with 95% CI")
    ax.grid(True, axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_by_x(
    table: pd.DataFrame,
    path: Path,
    *,
    x: str,
    xlabel: str,
    baselines: dict[str, pd.Series] | None = None,
) -> Path:
    """Accuracy (column `accuracy`) against `x`, tasks in columns and models in rows, with
    horizontal reference lines (e.g. accuracy without CoT) per facet."""
    if table.empty:
        return _empty_figure(path, "Nothing to plot.")
    data = _with_row_label(table)
    rows, cols = _facet_levels(data)
    fig, axes = _grid(len(rows), len(cols))
    styles = ["--", ":", "-."]
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            cell = data[(data["_row"] == row) & (data["task"] == col)].sort_values(x)
            ax.plot(cell[x], cell["accuracy"] * 100, marker="o", markersize=3.5, color="C0")
            for s_idx, (name, series) in enumerate((baselines or {}).items()):
                values = [
                    v
                    for key, v in series.items()
                    if col in (key if isinstance(key, tuple) else (key,)) and v == v
                ]
                if values:
                    ax.axhline(
                        float(values[0]) * 100,
                        linestyle=styles[s_idx % len(styles)],
                        color=f"C{s_idx + 1}",
                        label=name,
                    )
            ax.set_ylim(-3, 103)
            ax.grid(True, alpha=0.3)
            _facet_title(ax, row, col, len(rows), len(cols))
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel("% accuracy")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_letter_mass(rows: pd.DataFrame, path: Path) -> Path:
    """Distribution of the probability the first answer token put on the choice letters, per
    answer strategy: near 1 when the model answers with a letter where asked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for i, (strategy, part) in enumerate(rows.groupby("answer_strategy")):
        sns.histplot(
            part["letter_mass"].astype(float),
            bins=np.linspace(0, 1, 21),
            ax=ax,
            color=f"C{i}",
            label=str(strategy),
            element="step",
        )
    ax.set_xlabel("probability on the choice letters (first answer token)")
    ax.set_ylabel("answers")
    ax.set_xlim(0, 1)
    ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, path)
