"""Structured config schemas: typos in keys fail at composition, naming the key.

Each option of the config groups (model/, task/, intervention/) has a schema stored in Hydra's
ConfigStore as `schema/<group>/<name>`; the YAML files in conf/ extend it. The names below are
part of the interface (scripts and docs rely on them): task.n_questions, task.seed,
sampling.n_samples, sampling.temperature, cache.mode, cache.path, model.faithfulness,
intervention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cotfaith import registry
from cotfaith.cache import CacheMode
from cotfaith.continuation import ContinuationConfig


# ----------------------------------------------------------------------------- models
@dataclass
class BudgetConfig:
    max_usd: float | None = None
    """Stop cleanly before a call could take spending past this (null: no limit)."""


@dataclass
class SamplingConfig:
    n_samples: int = 4
    """CoT samples per question (the paper used 100)."""
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024


@dataclass
class CacheConfig:
    mode: CacheMode = CacheMode.read_write
    path: str = "outputs/cache.sqlite"
    """Relative paths are taken from the folder cotfaith was launched from."""


@dataclass
class SegmentationConfig:
    method: str = "sentence"
    """How a CoT is split into steps: sentence | newline. Recorded with the results."""


@dataclass
class AnswerConfig:
    strategy: str = "auto"
    """auto | logprobs | prefill | parse; auto picks the best the backend supports."""
    min_letter_mass: float = 0.5
    """Logprob read-out: least total probability the choice letters must hold on the first
    answer token; below it the answer is recorded as `low_mass` (never agreement)."""


@dataclass
class PromptsConfig:
    path: str | None = None
    """YAML file overriding any template of cotfaith.prompts.PromptTemplates."""


@dataclass
class ReportConfig:
    n_bootstrap: int = 1000
    """Bootstrap resamples (questions are resampled, with replacement)."""
    ci: float = 0.95
    """Confidence level of every interval."""
    seed: int = 0
    """Seed of the resamples (the same seed gives the same intervals)."""
    ci_method: str = "bca"
    """bca (bias-corrected and accelerated; default) | percentile."""
    unparseable: str = "drop"
    """Answers that could not be read, in curves: drop (neutral; default) | disagree (pushes
    the AOC up) | agree. The AOC under all three is shown whenever there are any."""
    min_cots_per_length: int = 3
    """Curves of CoT lengths with fewer CoTs are left out of the figure (not the AOC)."""
    n_examples: int = 3


@dataclass
@dataclass
class SameModelConfig:
    """A helper role played by the model under test itself (the default)."""

    provider: str = "same"


@dataclass
class Config:
    model: Any = MISSING
    """The model under test (conf/model/)."""
    task: Any = MISSING
    reasoning: Any = MISSING
    """How a question becomes a reasoning trace (conf/reasoning/): cot."""
    intervention: dict[str, Any] = field(default_factory=dict)
    mistake_model: Any = None
    """The model that writes mistakes for adding_mistakes (conf/mistake_model/): `same` (the
    model under test) or any model config."""
    paraphrase_model: Any = None
    """The model that paraphrases for paraphrase (conf/paraphrase_model/): `same` or any."""
    continuation: ContinuationConfig = field(default_factory=ContinuationConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    prices: dict[str, Any] = field(default_factory=dict)
    """USD per million tokens per model (conf/prices/default.yaml), for costs and budgets."""
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    dry_run: bool = False
    """Count calls and estimate tokens and cost of this configuration without calling a model."""
    progress: bool = True
    """Show a progress bar (stderr) with calls, cache hits, retries, failures and money."""
    progress_every: float = 10.0
    """Without a bar (progress=false): log a progress line every this many seconds (0: never)."""
    resume: bool = False
    """Rebuild a run folder that already holds records (a killed or stopped run) from the cache;
    without it a run never writes into a folder that holds another run's records."""
    retry_failed_at_end: bool = True
    """After the run (not after a stop, the budget or Ctrl-C), run the questions with a failed
    call once more: every call that succeeded is served from the cache, so only the failed
    ones are sent again, and their new rows replace the question's old ones."""
    max_failed_share: float = 0.05
    """Exit with code 4 (and say so first in the report) when more than this share of the
    distinct model calls failed for good, or when any failed and no answer was read."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # schemas live in their own groups (schema/...) so `--help` lists only real options
    cs.store(group="schema/role", name="same", node=SameModelConfig)
    registry.store_schemas(cs)
