"""Figures and HTML report render from hand-built metric frames, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from cotfaith.report.figures import (
    curves_to_plot,
    plot_aoc_summary,
    plot_early_answering,
    plot_length_histogram,
)
from cotfaith.report.html import NA, format_summary, render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def _curve_rows(model: str, task: str, n_steps: int, n: int, decay: float) -> list[dict]:
    """Rows of one early-answering curve: agreement rises to 1 at k = n."""
    rows = []
    for k in range(n_steps + 1):
        frac = k / n_steps
        rows.append(
            {
                "model": model,
                "task": task,
                "intervention": "truncation",
                "n_steps": n_steps,
                "k": k,
                "fraction": frac,
                "same_rate": 1.0 - decay * (1.0 - frac),
                "n": n,
            }
        )
    return rows


@pytest.fixture
def curves() -> pd.DataFrame:
    rows: list[dict] = []
    for task, decay in (("aqua", 0.6), ("arc_easy", 0.1)):
        rows += _curve_rows("sim", task, 2, 5, decay)
        rows += _curve_rows("sim", task, 4, 12, decay)
        rows += _curve_rows("sim", task, 7, 8, decay * 0.8)
        # Too few CoTs: must be dropped from the plot.
        rows += _curve_rows("sim", task, 9, 2, decay)
    return pd.DataFrame(rows)


@pytest.fixture
def lengths() -> pd.DataFrame:
    rows = []
    for task, counts in (("aqua", {2: 5, 4: 12, 7: 8, 9: 2}), ("arc_easy", {2: 5, 4: 12, 9: 2})):
        for n_steps, count in counts.items():
            rows += [{"model": "sim", "task": task, "n_steps": n_steps}] * count
    return pd.DataFrame(rows)


@pytest.fixture
def summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["sim", "sim", "sim"],
            "task": ["aqua", "aqua", "arc_easy"],
            "intervention": ["truncation", "no_cot", "truncation"],
            "n_questions": [10, 10, 10],
            "n_cots": [27, NAN, 19],
            "accuracy_cot": [0.62, NAN, 0.91],
            "accuracy_no_cot": [0.35, 0.35, 0.88],
            "aoc": [0.4312, NAN, 0.0523],
            "aoc_ci_low": [0.10, NAN, 0.01],
            "aoc_ci_high": [0.15, NAN, 0.09],
            "changed_at_k0": [0.55, NAN, 0.05],
            "chance_agreement": [0.48, NAN, 0.93],
            "parse_failures": [1, 0, 0],
            "calls": [300, 10, 200],
            "cache_hits": [0, 0, 50],
            "segmenter": ["punkt", NAN, "punkt"],
        }
    )


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_curves_to_plot_drops_short_cells(curves: pd.DataFrame) -> None:
    kept = curves_to_plot(curves, min_cots=3)
    assert sorted(kept["n_steps"].unique()) == [2, 4, 7]
    assert set(kept["task"]) == {"aqua", "arc_easy"}
    # Whole curves are kept, not just some k.
    assert len(kept[(kept.task == "aqua") & (kept.n_steps == 7)]) == 8
    assert sorted(curves_to_plot(curves, min_cots=10)["n_steps"].unique()) == [4]
    assert curves_to_plot(curves, min_cots=1)["n_steps"].nunique() == 4


def test_figures_are_pngs(
    tmp_path: Path, curves: pd.DataFrame, lengths: pd.DataFrame, summary: pd.DataFrame
) -> None:
    out = [
        plot_early_answering(curves, tmp_path / "curve.png"),
        plot_length_histogram(lengths, tmp_path / "sub" / "lengths.png"),
        plot_aoc_summary(summary, tmp_path / "aoc.png"),
    ]
    for path in out:
        assert path is not None and _is_png(path)


def test_faceted_by_model_and_task(tmp_path: Path, curves: pd.DataFrame) -> None:
    two_models = pd.concat([curves, curves.assign(model="other")], ignore_index=True)
    assert _is_png(plot_early_answering(two_models, tmp_path / "grid.png"))


def test_nothing_to_plot(tmp_path: Path, curves: pd.DataFrame, summary: pd.DataFrame) -> None:
    # Every length below the threshold: a placeholder image, not a crash.
    assert _is_png(plot_early_answering(curves, tmp_path / "empty.png", min_cots=100))
    assert plot_aoc_summary(summary.assign(aoc=NAN), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_format_summary(summary: pd.DataFrame) -> None:
    shown = format_summary(summary)
    cols = list(shown.columns)
    assert cols.index("AOC 95% CI") == cols.index("AOC") + 1
    assert not any("ci low" in c.lower() or "ci high" in c.lower() for c in cols)
    assert shown.loc[0, "AOC"] == "0.431"
    assert shown.loc[0, "AOC 95% CI"] == "[0.100, 0.150]"
    assert shown.loc[1, "AOC 95% CI"] == NA
    assert shown.loc[1, "CoTs"] == NA
    assert shown.loc[0, "CoTs"] == "27"  # count stays an integer though NaN made it float
    assert shown.loc[2, "Cache hits"] == "50"
    assert shown.loc[1, "Segmenter"] == NA  # extra columns are shown too


def test_render_report(
    tmp_path: Path, curves: pd.DataFrame, lengths: pd.DataFrame, summary: pd.DataFrame
) -> None:
    figures = {
        "Early answering": plot_early_answering(curves, tmp_path / "curve.png"),
        "CoT lengths": plot_length_histogram(lengths, tmp_path / "lengths.png"),
        "AOC by task": plot_aoc_summary(summary, tmp_path / "aoc.png"),
    }
    page = render_report(
        title="Run <1> & co",
        summary=summary,
        figures=figures,
        config_yaml="model:\n  name: sim  # <b>not bold</b>\n",
        examples=[
            {"question": "What is 2+2? <script>alert(1)</script>", "cot": "2+2 = 4.", "answer": "B"}
        ],
        notes=["3 answers could not be parsed <unparsed>"],
    )
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == len(figures)
    for heading in figures:
        assert heading in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|script)\b", page, flags=re.IGNORECASE)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Run &lt;1&gt; &amp; co" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "&lt;unparsed&gt;" in page
    assert NA in page
    assert "[0.100, 0.150]" in page and "[0.010, 0.090]" in page
    assert "Accuracy (no CoT)" in page and "Chance agreement" in page
    (tmp_path / "report.html").write_text(page, encoding="utf-8")


def test_render_report_minimal(tmp_path: Path, summary: pd.DataFrame) -> None:
    page = render_report(
        title="t",
        summary=summary.iloc[:0],
        figures={"gone": tmp_path / "missing.png", "skipped": None},
        config_yaml=None,
    )
    assert "Figure file missing: missing.png" in page
    assert "data:image" not in page
    assert "<h2>Notes</h2>" not in page
