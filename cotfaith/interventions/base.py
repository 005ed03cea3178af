"""Interventions: small units that turn a question or a reasoning trace into records.

An intervention is one module in this package (or a plugin module, see cotfaith.registry) that
registers a subclass of `Intervention` with `@register("intervention", name, config=Schema)`,
plus one YAML file in conf/intervention/. It brings everything about itself: how it runs (one
of three scopes), which helper model roles it calls, whether it needs the model under test to
continue a partial CoT, and how its records become summary columns, tables, figures and a
report section. The runner, metrics, report and CLI name no intervention.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd

from cotfaith import registry
from cotfaith.errors import ConfigError
from cotfaith.tasks.base import Question

if TYPE_CHECKING:
    from cotfaith.context import RunContext, Trace

Scope = Literal["question", "trace", "traces"]


@dataclass
class StatSettings:
    """How summaries compute their intervals (from the `report:` config)."""

    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    min_cots_per_length: int = 3
    ci_method: str = "bca"
    """bca | percentile (cotfaith.bootstrap)."""
    unparseable: str = "drop"
    """How unread answers enter curves: drop | disagree | agree (cotfaith.curvestats)."""


@dataclass
class Section:
    """What an intervention contributes to the report."""

    title: str
    explanation: str = ""
    """Plain text: what was done and how to read the numbers."""
    figures: dict[str, Path | None] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Written next to the report as <name>.csv."""
    shown_tables: tuple[str, ...] = ()
    """Names of `tables` also shown in the report (small ones)."""
    notes: list[str] = field(default_factory=list)


class Intervention(ABC):
    name: ClassVar[str]
    scope: ClassVar[Scope]
    """`question`: once per question, no trace needed (no_cot); `trace`: once per sampled
    trace (truncation, adding_mistakes, paraphrase); `traces`: once per question after all of
    its traces exist (filler_tokens needs the longest CoT of the question)."""
    roles: ClassVar[tuple[str, ...]] = ()
    """Helper model roles this intervention calls (e.g. `mistake_model`); each is a config
    group, by default the model under test itself."""
    needs_continuation: ClassVar[bool] = False
    """Whether the model under test must go on from a partial CoT (ctx.continue_cot)."""
    headline: ClassVar[tuple[str, ...]] = ()
    """Its summary columns worth a place in the report's compact table (with their CIs)."""
    payload_fields: ClassVar[Mapping[str, str]] = {}
    """The payload keys its analysis reads, and how the report's compact reader keeps each
    (cotfaith.records.read_compact): `text` (a repeated string), `flag` (only whether it is
    set) or `number`. Read them with `payload_column`, which serves full and compact rows."""

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)

    # ------------------------------------------------------------------ running
    async def run_question(self, ctx: RunContext, q: Question) -> None:
        raise NotImplementedError

    async def run_trace(self, ctx: RunContext, trace: Trace) -> None:
        raise NotImplementedError

    async def run_traces(self, ctx: RunContext, q: Question, traces: list[Trace]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ analysis
    # Classmethods reading only records, so a report can be rebuilt from a run folder.
    @classmethod
    def summarize(
        cls, rows: pd.DataFrame, group: pd.DataFrame, stats: StatSettings
    ) -> dict[str, Any]:
        """Summary columns for this intervention's answered rows of one (model, task, method);
        `group` holds every answered row of that group (references, no_cot...)."""
        return {}

    @classmethod
    def controls(
        cls, rows: pd.DataFrame, group: pd.DataFrame, stats: StatSettings
    ) -> dict[str, Any]:
        """Columns shown on EVERY summary row of the group (a control such as the accuracy
        without CoT belongs beside every metric), from this intervention's answered rows
        (`group`: every answered row of the group)."""
        return {}

    @classmethod
    def section(
        cls, records: pd.DataFrame, summary: pd.DataFrame, fig_dir: Path, stats: StatSettings
    ) -> Section | None:
        """This intervention's report section (figures, tables, notes), from its records."""
        return None


def payload_column(rows: pd.DataFrame, key: str, *, flag: bool = False) -> pd.Series:
    """A payload field of every row (`flag`: only whether it is set, True/False): the compact
    reader's `payload.<key>` column when there is one, else read from the full records'
    `payload`."""
    from cotfaith.records import PAYLOAD_PREFIX

    if PAYLOAD_PREFIX + key in rows:
        column = rows[PAYLOAD_PREFIX + key]
        return column.astype(bool) if flag else column
    if flag:
        return rows["payload"].map(lambda p: bool((p or {}).get(key)))
    return rows["payload"].map(lambda p: (p or {}).get(key))


def intervention_class(name: str) -> type[Intervention] | None:
    entry = registry.maybe("intervention", name)
    return entry.obj if entry is not None else None


def build_interventions(selected: Mapping[str, Mapping[str, Any]]) -> list[Intervention]:
    out = []
    for key, settings in selected.items():
        name = settings.get("name", key) if isinstance(settings, Mapping) else key
        entry = registry.lookup("intervention", name, where=f"intervention.{key}")
        out.append(entry.obj(settings or {}))
    if not out:
        raise ConfigError("intervention: none selected; e.g. intervention=[truncation,no_cot]")
    return out
