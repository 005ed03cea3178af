"""Every config in conf/ composes against its schema (lightning-hydra-template style)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cotfaith import registry
from cotfaith.cli import CONFIG_DIR
from cotfaith.interventions.base import REGISTRY, build_interventions
from cotfaith.models import PROVIDERS

CONF = Path(CONFIG_DIR)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_config_composes_and_resolves():
    cfg = _compose()
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["model"]["provider"] == "simulated"
    assert set(container["intervention"]) == {"truncation", "no_cot"}
    assert container["sampling"]["temperature"] == 0.8
    assert container["sampling"]["top_p"] == 0.95


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_config_composes(option):
    cfg = _compose(f"model={option}")
    assert cfg.model.provider in PROVIDERS


@pytest.mark.parametrize("option", _options("task"))
def test_every_task_config_composes(option):
    cfg = _compose(f"task={option}")
    assert cfg.task.name in registry.names("task")


def test_every_intervention_config_composes_and_is_registered():
    options = _options("intervention")
    cfg = _compose(f"intervention=[{','.join(options)}]")
    built = build_interventions(cfg.intervention)
    assert sorted(iv.name for iv in built) == sorted(options)
    assert set(options) <= set(REGISTRY)


@pytest.mark.parametrize(
    "override",
    [
        "task.n_questons=5",
        "model.faithfullness=0.1",
        "samplin.n_samples=2",
        "intervention.truncation.points=3",
    ],
)
def test_unknown_keys_are_rejected_naming_the_key(override):
    with pytest.raises(ConfigCompositionException) as e:
        _compose(override)
    assert override.split("=")[0] in str(e.value)


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigCompositionException) as e:
        _compose("task.n_questions=many")
    assert "n_questions" in str(e.value) + str(e.value.__cause__)
