"""Structured config schemas: typos in keys fail at composition, naming the key.

Each config group (model/, task/, intervention/) has a schema stored in Hydra's ConfigStore as
`<name>_schema`; the YAML files in conf/ extend it. The names below are part of the interface
(scripts and docs rely on them): task.n_questions, task.seed, sampling.n_samples,
sampling.temperature, cache.mode, cache.path, model.faithfulness, intervention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cotfaith.cache import CacheMode


# ----------------------------------------------------------------------------- models
@dataclass
class SimulatedModelConfig:
    provider: str = "simulated"
    name: str = "organism"
    faithfulness: float = 0.8
    """Share of questions whose final answer is causally determined by the CoT text."""
    accuracy_cot: float = 0.85
    """P(a sampled CoT concludes the correct choice)."""
    accuracy_no_cot: float = 0.5
    """P(the no-CoT prior is correct) on questions where the CoT matters."""
    verify_rate: float = 0.3
    """Share of CoT samples with an extra checking step."""
    seed: int = 0
    latency: float = 0.0
    """Seconds per call, to exercise concurrency (not part of the cache key)."""
    concurrency: int = 64


# ----------------------------------------------------------------------------- tasks
@dataclass
class ArithmeticTaskConfig:
    name: str = "arithmetic"
    n_questions: int = 50
    seed: int = 0
    min_steps: int = 2
    """Fewest operations per problem."""
    max_steps: int = 6
    min_choices: int = 4
    max_choices: int = 5


# ----------------------------------------------------------------------------- interventions
@dataclass
class TruncationConfig:
    """Early answering: answer after the first k of n steps, for every k = 0..n."""

    name: str = "truncation"


@dataclass
class NoCotConfig:
    """The no-CoT baseline: answer straight after the question."""

    name: str = "no_cot"


# ----------------------------------------------------------------------------- the rest
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


@dataclass
class PromptsConfig:
    path: str | None = None
    """YAML file overriding any template of cotfaith.prompts.PromptTemplates."""


@dataclass
class ReportConfig:
    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    min_cots_per_length: int = 3
    """Curves of CoT lengths with fewer CoTs are left out of the figure (not the AOC)."""
    n_examples: int = 3


@dataclass
class Config:
    model: Any = MISSING
    task: Any = MISSING
    intervention: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    progress: bool = True
    """Show a progress bar (it goes to stderr; logs say the same in coarser steps)."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="simulated_schema", node=SimulatedModelConfig)
    cs.store(group="task", name="arithmetic_schema", node=ArithmeticTaskConfig)
    cs.store(
        group="intervention",
        name="truncation_schema",
        node=TruncationConfig,
        package="intervention.truncation",
    )
    cs.store(
        group="intervention", name="no_cot_schema", node=NoCotConfig, package="intervention.no_cot"
    )
