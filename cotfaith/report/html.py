"""Self-contained HTML report: one file, no external resources, opens from disk.

Figures are inlined as base64 ``data:`` URIs and all CSS is embedded, so the report can be
mailed or archived next to the run without breaking. Every piece of user or model text goes
through :func:`html.escape` (questions and CoTs can contain markup).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cotfaith.metrics import COUNT_COLUMNS

__all__ = ["NA", "format_summary", "render_report"]

NA = "—"  # shown for NaN / not applicable

# Readable headers for the columns cotfaith.metrics produces; others are derived from the name.
_HEADERS: dict[str, str] = {
    "model": "Model",
    "task": "Task",
    "intervention": "Intervention",
    "n_questions": "Questions",
    "n_cots": "CoTs",
    "accuracy_cot": "Accuracy (CoT)",
    "accuracy_no_cot": "Accuracy (no CoT)",
    "aoc": "AOC",
    "changed_at_k0": "Changed at k=0",
    "aoc_given_changed": "Aoc given changed",
    "aoc_normalised": "Aoc normalised",
    "changed_vs_no_cot": "Changed vs no cot",
    "cots_missing_endpoint": "Cots missing endpoint",
    "small_n": "Small n",
    "letter_mass_median": "Letter mass median",
    "chance_agreement": "Chance agreement",
    "parse_failures": "Parse failures",
    "calls": "Model calls",
    "cache_hits": "Cache hits",
    "failed_calls": "Failed calls",
    "cost_usd": "Cost (USD)",
    "cost_usd_this_run": "Spent this run (USD)",
}
# Counts are shown without decimals even when NaNs forced the column to float.
_COUNT_COLUMNS = {"n", *COUNT_COLUMNS}
_CI_LOW, _CI_HIGH = "_ci_low", "_ci_high"

_EXPLANATION = (
    "Each row is one (model, task, reasoning method, intervention). Every metric stands beside "
    "its controls: accuracy with and without CoT, how often the answer without reasoning "
    "already differs, and how often two independent CoT samples agree. Read no metric alone; "
    "the glossary at the end says what each column measures and when it misleads. Intervals "
    "are cluster-bootstrap intervals (questions resampled)."
)

# Column -> what it measures and when it misleads (the report's glossary).
GLOSSARY: dict[str, str] = {
    "AOC": "Area over the curve (Lanham et al. 2023): 1 - the trapezoid area of the share of "
    "answers equal to the complete-CoT answer, over x = share of the CoT shown (early "
    "answering) or before the mistake (adding mistakes); CoT lengths weighted by their share. "
    "Misleads when the answer without reasoning already equals the CoT's conclusion: such a "
    "CoT scores ~0 however much the model relies on it.",
    "Changed at k=0": "Share of CoTs whose answer differs when the CoT is emptied (the k = 0 "
    "truncation prompt: the question with an empty reasoning turn). Only these CoTs can "
    "score; AOC ~ this x the conditional AOC.",
    "Aoc given changed": "The conditional AOC: mean AOC over the CoTs whose answer changed "
    "at k=0. Shows how early the answer forms where the CoT matters at all.",
    "Aoc normalised": "The conditional AOC divided by its maximum (2n-1)/(2n) for a CoT of n "
    "steps (an answer that moves only at the last step): 1 = the answer forms at the end.",
    "Changed vs no cot": "Share of CoT answers that differ from the answer to the no-CoT "
    "prompt (the paper's scaling proxy), measured on the no-CoT prompt itself.",
    "Chance agreement": "Probability that two independent CoT samples of one question give "
    "the same answer: a model biased to one letter agrees without reading its reasoning. "
    "A same-answer rate near it says little. Not on the AOC's scale.",
    "Accuracy (CoT)": "Accuracy of the answers after the complete, unmodified CoT.",
    "Accuracy (no CoT)": "Accuracy of the answers to the no-CoT prompt.",
    "Parse failures": "Answers that could not be read: unparseable text, low probability on "
    "the choice letters (low_mass), a reply that started a new turn. Never agreement; in "
    "curves handled by report.unparseable (default: dropped), with the AOC under every rule "
    "(aoc_if_drop / _disagree / _agree) shown whenever there are any.",
    "Cots missing endpoint": "CoTs left out of a curve because their k = 0 or k = n point is "
    "missing (a failed call, an unread answer): integrating over a shorter range biases the "
    "AOC.",
    "Small n": "Fewer than 30 questions: bootstrap intervals undercover; treat them as rough.",
    "Letter mass median": "Median probability the first answer token put on the choice "
    "letters (logprob read-out); near 1 when the model answers with a letter where asked.",
    "Model calls": "Distinct model calls behind the rows (calls, not rows: a call several "
    "rows share, such as the reference answer re-asked at k = n, counts once, in the first "
    "summary row holding it), so the column sums to the run's distinct calls (run.json's "
    "roles); run.json's `calls` also counts the repeats the cache served.",
    "Cache hits": "Of those distinct calls, the ones this run never sent (every row holding "
    "the call got it from the cache).",
    "Retries": "Failed attempts retried before those distinct calls succeeded or gave up, each "
    "call counted once. run.json's retries count every request's (a failed call asked for "
    "again is a second request) and its preflight_retries the checks before the run.",
    "Failed calls": "Distinct calls that failed after every retry (call_failed), as run.json "
    "counts them; never answers.",
}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  max-width: 1220px; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.3em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
p.explain { background: #f6f8fa; border-left: 4px solid #8aa; padding: 0.6em 0.9em; }
ul.notes { background: #fff8e1; border-left: 4px solid #e0a800; padding: 0.6em 0.9em 0.6em 2em; }
.table-wrap { overflow-x: auto; }
details { margin-top: 0.6em; }
summary { cursor: pointer; color: #345; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #eef1f4; text-align: left; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #888; text-align: center; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.6em; white-space: pre-wrap;
  word-wrap: break-word; font-size: 0.85em; }
.example { margin-bottom: 1.2em; }
.label { font-weight: 600; margin: 0.4em 0 0.1em; }
.missing { color: #a00; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  h2 { page-break-after: avoid; }
  figure, table, pre { page-break-inside: avoid; }
  tbody tr:nth-child(even) { background: none; }
  .table-wrap { overflow: visible; }
}
"""

_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


def _is_missing(value: object) -> bool:
    """True for None, NaN, pd.NA and NaT."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists / arrays: not a scalar missing value
        return False


def _header(column: str) -> str:
    """Readable header for a column name."""
    if column in _HEADERS:
        return _HEADERS[column]
    if column.endswith("_ci"):
        return _header(column[: -len("_ci")]) + " 95% CI"
    text = column.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _format_value(column: str, value: object) -> str:
    """Format one cell as plain (unescaped) text."""
    if _is_missing(value):
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isinf(number):
            return "∞" if number > 0 else "-∞"
        if column.startswith("cost"):
            return f"{number:.4f}"
        if column in _COUNT_COLUMNS or (isinstance(value, int) and not isinstance(value, float)):
            return f"{int(round(number)):d}" if number.is_integer() else f"{number:.3f}"
        return f"{number:.3f}"
    # numpy scalars are not int/float subclasses except float64; normalise them.
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return _format_value(column, value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _format_ci(low: object, high: object) -> str:
    """'[0.100, 0.150]' (as many decimals as the estimate), or NA when a bound is missing."""
    if _is_missing(low) or _is_missing(high):
        return NA
    return f"[{float(low):.3f}, {float(high):.3f}]"


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary as display strings: readable headers, 3-decimal fractions, one CI column.

    Each ``X_ci_low``/``X_ci_high`` pair becomes one "X 95% CI" column placed right after X
    (or where the low bound was when X itself is absent). Unescaped; the renderer escapes.
    """
    columns = [str(c) for c in summary.columns]
    frame = summary.copy()
    frame.columns = columns
    ci_bases = [
        c[: -len(_CI_LOW)]
        for c in columns
        if c.endswith(_CI_LOW) and c[: -len(_CI_LOW)] + _CI_HIGH in columns
    ]
    paired = {b + _CI_LOW for b in ci_bases} | {b + _CI_HIGH for b in ci_bases}
    order: list[tuple[str, str]] = []  # (output name, kind: "col" or "ci:<base>")
    placed: set[str] = set()
    for col in columns:
        if col in paired:
            base = col[: -len(_CI_LOW)] if col.endswith(_CI_LOW) else None
            if base is not None and base not in columns and base not in placed:
                order.append((base + "_ci", "ci:" + base))
                placed.add(base)
            continue
        order.append((col, "col"))
        if col in ci_bases and col not in placed:
            order.append((col + "_ci", "ci:" + col))
            placed.add(col)

    out: dict[str, list[str]] = {}
    for name, kind in order:
        if kind == "col":
            values = [_format_value(name, v) for v in frame[name].tolist()]
        else:
            base = kind[len("ci:") :]
            values = [
                _format_ci(lo, hi)
                for lo, hi in zip(
                    frame[base + _CI_LOW].tolist(), frame[base + _CI_HIGH].tolist(), strict=True
                )
            ]
        out[_header(name)] = values
    return pd.DataFrame(out, index=range(len(frame)), dtype=object)


def _table_html(summary: pd.DataFrame) -> str:
    """The summary as an escaped HTML table."""
    if summary.empty:
        return "<p>No results.</p>"
    shown = format_summary(summary)
    numeric = {
        _header(str(c))
        for c in summary.columns
        if pd.api.types.is_numeric_dtype(summary[c]) and not pd.api.types.is_bool_dtype(summary[c])
    }
    numeric |= {h for h in shown.columns if h.endswith("95% CI")}
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in shown.columns)
    body_rows = []
    for row in shown.itertuples(index=False, name=None):
        cells = []
        for header, text in zip(shown.columns, row, strict=True):
            cls = "na" if text == NA else ("num" if header in numeric else "")
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(text)}</td>")
        body_rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="table-wrap"><table>\n<thead><tr>'
        + head
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(body_rows)
        + "\n</tbody>\n</table></div>"
    )


def _cell(summary: pd.DataFrame, i: int, c: str) -> str:
    """One value with its interval, if it has one: '0.183 [0.089, 0.276]'."""
    value = _format_value(c, summary[c].iloc[i])
    lo, hi = f"{c}{_CI_LOW}", f"{c}{_CI_HIGH}"
    if value != NA and lo in summary and hi in summary:
        ci = _format_ci(summary[lo].iloc[i], summary[hi].iloc[i])
        if ci != NA:
            value = f"{value} {ci}"
    return value


def _compact_html(
    summary: pd.DataFrame, shown: list[str], headlines: Mapping[str, Sequence[str]]
) -> str:
    """Few columns, each estimate with its interval in one cell, and each intervention's own
    headline numbers in one column; labels that are the same on every row (one model, one
    task) said once above the table instead of in a column."""
    constant = [c for c in ("model", "task", "method") if c in shown and summary[c].nunique() == 1]
    cols = [c for c in shown if c not in constant]
    head = [_header(c) for c in cols] + ["Its own metrics"]
    body = []
    for i in range(len(summary)):
        cells = []
        for c in cols:
            text = _cell(summary, i, c)
            cls = (
                "na"
                if text == NA
                else ("" if c in ("model", "task", "method", "intervention") else "num")
            )
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        iv = str(summary["intervention"].iloc[i]) if "intervention" in summary else ""
        own = [
            f"{_header(c)} {_cell(summary, i, c)}"
            for c in headlines.get(iv, ())
            if c in summary and _cell(summary, i, c) != NA
        ]
        cells.append(f"<td>{html.escape('; '.join(own)) or NA}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = "; ".join(f"{_header(c)}: {summary[c].iloc[0]}" for c in constant)
    cap = f"<p>{html.escape(caption)}; 95% intervals in brackets</p>" if caption else ""
    th = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in head)
    return (
        f'{cap}<div class="table-wrap"><table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>"
    )


def _base(column: str) -> str:
    """A CI bound's metric (aoc_ci_low -> aoc), so a compact table keeps its intervals."""
    for suffix in (_CI_LOW, _CI_HIGH):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return column


def _data_uri(path: Path) -> str:
    """Inline an image file as a base64 data: URI."""
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{mime};base64,{encoded}"


def _figure_html(name: str, path: Path | str | None) -> str:
    """One figure section; a missing file is reported rather than failing the whole report."""
    heading = f"<h3>{html.escape(name)}</h3>"
    if path is None:
        return heading + '<p class="missing">Figure not produced.</p>'
    path = Path(path)
    if not path.is_file():
        # Say which file is missing by name only: an absolute path leaks the machine layout.
        return heading + f'<p class="missing">Figure file missing: {html.escape(path.name)}</p>'
    return (
        f"<figure>{heading}"
        f'<img src="{_data_uri(path)}" alt="{html.escape(name, quote=True)}">'
        "</figure>"
    )


# Keys shown first in an example, in this order; any other keys follow as given.
_EXAMPLE_ORDER = ("question", "choices", "cot", "answer")


def _example_html(index: int, example: Mapping[str, str]) -> str:
    """One example: each field as a labelled, escaped <pre> block."""
    keys = [k for k in _EXAMPLE_ORDER if k in example]
    keys += [k for k in example if k not in _EXAMPLE_ORDER]
    parts = [f'<div class="example"><h3>Example {index}</h3>']
    for key in keys:
        value = example[key]
        text = "" if _is_missing(value) else str(value)
        label = _HEADERS.get(key) or _header(str(key))
        if key == "cot":
            label = "Chain of thought"
        parts.append(f'<div class="label">{html.escape(label)}</div><pre>{html.escape(text)}</pre>')
    parts.append("</div>")
    return "\n".join(parts)


def render_report(
    *,
    title: str,
    summary: pd.DataFrame,
    figures: Mapping[str, Path | None],
    config_yaml: str | None,
    examples: Sequence[Mapping[str, str]] = (),
    notes: Sequence[str] = (),
    sections: Sequence[object] = (),
    compact_columns: Sequence[str] = (),
    headlines: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Return a complete, self-contained HTML5 report as a string.

    ``figures`` maps a heading to an image file (inlined; a ``None`` or missing file is shown
    as such). ``examples`` are mappings such as ``{"question": ..., "cot": ..., "answer": ...}``.
    """
    parts = list(sections)
    sections: list[str] = [
        f"<header><h1>{html.escape(title)}</h1>",
        f'<p class="explain">{_EXPLANATION}</p></header>',
    ]
    if notes:
        items = "\n".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
        sections.append(f'<section><h2>Notes</h2>\n<ul class="notes">\n{items}\n</ul></section>')
    shown = [c for c in compact_columns if c in summary.columns]
    if shown and len(shown) < len(summary.columns):
        # a table that fits a 1280 px screen, then every column behind a click
        compact = _compact_html(summary, shown, headlines or {})
        full = _table_html(summary)
        table = (
            f"{compact}\n<details><summary>All {len(summary.columns)} columns "
            f"(summary.csv)</summary>\n{full}</details>"
        )
    else:
        table = _table_html(summary)
    sections.append(f"<section><h2>Summary</h2>\n{table}</section>")
    for part in parts:
        # an intervention's own section: what it did, its figures (cotfaith.interventions)
        text = f'<p class="explain">{html.escape(part.explanation)}</p>' if part.explanation else ""
        figs = "\n".join(_figure_html(name, p) for name, p in part.figures.items())
        shown = getattr(part, "shown_tables", ())
        tables = "\n".join(
            f"<h3>{html.escape(name)}</h3>\n{_table_html(part.tables[name])}"
            for name in shown
            if name in part.tables
        )
        sections.append(
            f"<section><h2>{html.escape(part.title)}</h2>\n{text}\n{tables}\n{figs}</section>"
        )
    if figures:
        figs = "\n".join(_figure_html(name, p) for name, p in figures.items())
        sections.append(f"<section><h2>Figures</h2>\n{figs}</section>")
    if examples:
        exs = "\n".join(_example_html(i, ex) for i, ex in enumerate(examples, start=1))
        sections.append(f"<section><h2>Examples</h2>\n{exs}</section>")
    terms = "\n".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items()
    )
    sections.append(f"<section><h2>Glossary</h2>\n<dl>{terms}</dl></section>")
    config = config_yaml if config_yaml else "(no configuration recorded)"
    sections.append(
        f"<section><h2>Run configuration</h2>\n<pre>{html.escape(config)}</pre></section>"
    )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
