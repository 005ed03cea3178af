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
class ApiModelConfig:
    """Common keys of the HTTP backends. The key itself never sits in a config: only the
    NAME of the environment variable that holds it."""

    provider: str = MISSING
    name: str = MISSING
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    """Overrides sampling.temperature for CoT sampling with this model (null: inherit)."""
    top_p: float | None = None
    """Overrides sampling.top_p for CoT sampling with this model (null: inherit)."""
    max_tokens: int | None = None
    """Overrides sampling.max_tokens for CoT sampling with this model (null: inherit)."""
    omit_params: list[str] = field(default_factory=list)
    """Sampling parameters never sent (e.g. top_p for Claude models that reject it with
    temperature). Part of the cache key."""
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = 120.0
    """Seconds before a call is abandoned and retried."""
    retries: int = 8
    retry_initial: float = 0.5
    retry_max: float = 60.0


@dataclass
class OpenAIModelConfig(ApiModelConfig):
    provider: str = "openai"
    api_key_env: str | None = "OPENAI_API_KEY"
    logprobs: str = "auto"
    """auto (probe once) | true | false."""
    continuation: str = "none"
    """How a partial assistant turn is continued: none (CoT and answers by instruction) |
    prefill (vLLM continue_final_message) | completion (raw /v1/completions with the chat
    template) | auto (probe prefill, then completion, else none). Every mode is verified by a
    probe before the run relies on it; an explicit mode the server does not honour fails.
    Default none for OpenAI's API (it cannot continue a turn); conf/model/openai_compatible.yaml
    sets auto, so a local server gets real continuation where it has one, and only then."""
    chat_template: str = "auto"
    """Template for continuation=completion. auto: the server's own (llama.cpp GET /props),
    else local files named by model.name (a model folder, a .gguf file, the Hugging Face hub
    cache), else the built-in ChatML (with a notice). Or give it: chatml, or a path to a
    tokenizer_config.json, a .gguf model file or a Jinja template file. Its content is part
    of the cache key."""
    max_tokens_field: str = "auto"
    """Request field for the output cap: auto (max_completion_tokens for OpenAI's own API, no
    base_url or api.openai.com; max_tokens elsewhere: llama.cpp ignores the other) |
    max_tokens | max_completion_tokens."""
    send_seed: bool = True
    """Send the sample index as `seed` (reproducible samples where the server honours it)."""


@dataclass
class AnthropicModelConfig(ApiModelConfig):
    provider: str = "anthropic"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    prefill: str = "auto"
    """auto | true | false. auto and true probe once that the model really continues a
    prefilled turn; auto falls back to instruction + parse when it does not, true fails."""
    omit_params: list[str] = field(default_factory=lambda: ["top_p"])


# ----------------------------------------------------------------------------- the rest
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
    """Show a progress bar (it goes to stderr; logs say the same in coarser steps)."""
    resume: bool = False
    """Rebuild a run folder that already holds records (a killed or stopped run) from the cache;
    without it a run never writes into a folder that holds another run's records."""
    max_failed_share: float = 0.05
    """Exit with code 4 (and say so first in the report) when more than this share of the
    distinct model calls failed for good, or when any failed and no answer was read."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # schemas live in their own groups (schema/...) so `--help` lists only real options
    cs.store(group="schema/model", name="openai", node=OpenAIModelConfig)
    cs.store(group="schema/model", name="anthropic", node=AnthropicModelConfig)
    cs.store(group="schema/role", name="same", node=SameModelConfig)
    registry.store_schemas(cs)
