"""Every config in conf/ composes against its schema (lightning-hydra-template style)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cotfaith import registry
from cotfaith.cli import CONFIG_DIR
from cotfaith.interventions.base import build_interventions

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
    assert cfg.model.provider in registry.names("backend")


@pytest.mark.parametrize("option", _options("task"))
def test_every_task_config_composes(option):
    cfg = _compose(f"task={option}")
    assert cfg.task.name in registry.names("task")


def test_every_intervention_config_composes_and_is_registered():
    options = _options("intervention")
    cfg = _compose(f"intervention=[{','.join(options)}]")
    built = build_interventions(cfg.intervention)
    assert sorted(iv.name for iv in built) == sorted(options)
    assert set(options) <= set(registry.names("intervention"))


def _groups() -> list[str]:
    # experiment presets are added with +experiment=..., composed in tests/test_presets.py
    skip = ("hydra", "experiment")
    return sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in skip)


def test_every_option_of_every_group_composes():
    """lightning-hydra-template style: each YAML in every group composes against its schema."""
    seen = 0
    for group in _groups():
        for option in _options(group):
            override = f"{group}=[{option}]" if group == "intervention" else f"{group}={option}"
            cfg = _compose(override)
            OmegaConf.to_container(cfg, resolve=False)
            seen += 1
    assert seen >= 20


@pytest.mark.parametrize("role", ["mistake_model", "paraphrase_model"])
def test_helper_roles_default_to_the_model_under_test_and_take_any_backend(role):
    assert _compose()[role].provider == "same"
    cfg = _compose(f"{role}=openai", f"{role}.name=gpt-4o-mini", "model=anthropic")
    assert cfg[role].provider == "openai" and cfg[role].name == "gpt-4o-mini"
    assert cfg.model.provider == "anthropic"
    with pytest.raises(ConfigCompositionException):
        _compose(f"{role}=openai", f"{role}.nmae=x")


def test_every_registered_component_has_a_config_file():
    """A component registered in code but without its YAML could not be selected."""
    for kind, (group, _package, _key) in registry.KINDS.items():
        if kind == "backend":
            continue  # backends' options are named by provider, several share a schema
        assert set(registry.names(kind)) <= set(_options(group)), kind


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
