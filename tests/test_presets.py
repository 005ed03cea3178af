"""Experiment presets (conf/experiment/) and the checks that run before Hydra: `+` adds only keys
a schema allows, group options exist (`+experiment=nope` names the presets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from cotfaith.cli import CONFIG_DIR, check_overrides
from cotfaith.errors import ConfigError
from tests.helpers import run_cli

CONF = Path(CONFIG_DIR)
PAPER_TASKS = [
    "aqua",
    "logiqa",
    "mmlu",
    "truthfulqa",
    "hellaswag",
    "openbookqa",
    "arc_challenge",
    "arc_easy",
]
LANHAM_INTERVENTIONS = {"truncation", "adding_mistakes", "paraphrase", "filler_tokens", "no_cot"}


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _presets() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", _presets())
def test_every_preset_is_global_and_composes(preset):
    text = (CONF / "experiment" / f"{preset}.yaml").read_text()
    assert text.splitlines()[0] == "# @package _global_"
    cfg = _compose(f"+experiment={preset}", hydra=True)
    assert cfg.hydra.runtime.choices["experiment"] == preset


def test_lanham2023_is_the_papers_protocol_and_grid():
    cfg = _compose("+experiment=lanham2023", hydra=True)
    assert set(cfg.intervention) == LANHAM_INTERVENTIONS
    assert (cfg.sampling.n_samples, cfg.sampling.temperature, cfg.sampling.top_p) == (
        100,
        0.8,
        0.95,
    )
    assert cfg.intervention.filler_tokens.step == 5
    assert cfg.intervention.adding_mistakes.positions == "all"
    assert cfg.segmentation.method == "sentence"
    assert str(cfg.hydra.sweeper.params.task).split(",") == PAPER_TASKS
    text = (CONF / "experiment" / "lanham2023.yaml").read_text()
    # says what is not reproduced, and why there is no Radhakrishnan et al. preset
    assert "Not reproduced" in text and "Radhakrishnan" in text and "decomposition" in text


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_every_job_of_the_lanham2023_grid_composes_on_a_real_model(task):
    """What `cotfaith -m +experiment=lanham2023 model=openai` composes for each task."""
    cfg = _compose("+experiment=lanham2023", "model=openai", f"task={task}")
    assert cfg.task.name == task and cfg.model.provider == "openai"
    assert set(cfg.intervention) == LANHAM_INTERVENTIONS
    assert cfg.sampling.n_samples == 100


def test_lanham2023_smoke_is_tiny_and_offline():
    cfg = _compose("+experiment=lanham2023_smoke", hydra=True)
    assert cfg.model.provider == "simulated" and cfg.task.name == "arithmetic"
    assert cfg.task.n_questions <= 6 and cfg.sampling.n_samples <= 2
    assert set(cfg.intervention) == LANHAM_INTERVENTIONS
    assert cfg.hydra.sweeper.params  # a small grid with -m


def test_command_line_overrides_beat_the_preset():
    cfg = _compose("+experiment=lanham2023", "sampling.n_samples=3", "task=mmlu")
    assert cfg.sampling.n_samples == 3 and cfg.task.name == "mmlu"


@pytest.mark.slow
def test_lanham2023_smoke_runs_every_intervention_offline(tmp_path):
    from cotfaith import run

    result = run(["+experiment=lanham2023_smoke", "progress=false"], "smoke", launch_dir=tmp_path)
    assert set(result.records["intervention"]) >= LANHAM_INTERVENTIONS
    assert set(result.summary["intervention"]) >= LANHAM_INTERVENTIONS
    assert result.records["question_id"].nunique() == 6


@pytest.mark.slow
def test_lanham2023_runs_on_the_organism_with_a_papers_task(shared_data, tmp_path):
    """The real preset, as it is, on one of the paper's tasks (aqua) from the published file."""
    from cotfaith import run

    result = run(
        [
            "+experiment=lanham2023",
            f"task.data_dir={shared_data}",
            "task.n_questions=2",
            "sampling.n_samples=1",
            "progress=false",
        ],
        "aqua",
        launch_dir=tmp_path,
    )
    assert set(result.records["task"]) == {"aqua"}
    assert set(result.records["intervention"]) >= LANHAM_INTERVENTIONS
    assert result.config["sampling"]["temperature"] == 0.8


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["+model.faithfulnes=0.3"], ["+model.faithfulnes=0.3", "'faithfulness'"]),
        (["++model.faithfulnes=0.3"], ["++model.faithfulnes=0.3", "'faithfulness'"]),
        (["+sampling.n_sample=3"], ["n_sample", "'n_samples'"]),
        (["model=openai", "+model.faithfulness=1"], ["model=openai", "faithfulness"]),
        (["-m", "+model.logprobs=auto"], ["logprobs", "model=simulated"]),
        (["+nonsense=1"], ["nonsense"]),
        (["+experiment=nope"], ["nope", "lanham2023, lanham2023_smoke"]),
        (["experiment=lanham2023"], ["+experiment=lanham2023"]),
        (["model=gpt"], ["gpt", "anthropic, openai, openai_compatible, simulated"]),
        (["intervention=[truncaton]"], ["truncaton", "'truncation'"]),
        (["-m", "model=simulated,nope"], ["nope"]),
        (["+hydra.launcher.n_job=2"], ["n_job"]),
    ],
)
def test_checks_fail_in_one_line_naming_the_problem(overrides, expected):
    with pytest.raises(ConfigError) as e:
        check_overrides([o for o in overrides if o != "-m"])
    message = str(e.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_a_typo_is_caught_in_every_option_of_a_swept_group():
    check_overrides(["model=simulated,openai", "+model.size=7"])
    check_overrides(["++model.faithfulness=0.5", "model=simulated"])
    # the organism has the key, the openai schema does not: the sweep's second job would not
    with pytest.raises(ConfigError, match=r"model=openai\) has no key 'faithfulness'"):
        check_overrides(["model=simulated,openai", "++model.faithfulness=0.5"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["+experiment=lanham2023"],
        ["+experiment=lanham2023_smoke", "task.n_questions=3"],
        ["+model.size=7B"],  # read by the sweep report, declared by no schema
        ["+prices.my-model={input:1,output:2}"],  # an open mapping
        ["++sampling.n_samples=3"],  # ++ overrides a key that exists
        ["+hydra.job.env_set.FOO=bar"],
        ["model=simulated,openai", "task=glob(*)"],
        ["task.n_questions=3", "sampling.n_samples=1"],
        ["~mistake_model"],
    ],
)
def test_what_the_schema_allows_passes(overrides):
    check_overrides(overrides)


def test_allow_new_keys_lifts_the_check():
    check_overrides(["+model.faithfulnes=0.3"], allow_new_keys=True)


def test_plugin_search_paths_count_for_group_options(tmp_path):
    extra = tmp_path / "conf" / "experiment"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text("# @package _global_\nsampling:\n  n_samples: 1\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    check_overrides([search, "+experiment=mine"])
    with pytest.raises(ConfigError, match="lanham2023, lanham2023_smoke, mine"):
        check_overrides([search, "+experiment=other"])


@pytest.mark.slow
def test_cli_refuses_a_plus_typo_before_any_work(tmp_path):
    proc = run_cli(tmp_path, "+model.faithfulnes=0.3", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("cotfaith: error: +model.faithfulnes=0.3")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # nothing ran, no cache was opened


def test_preset_comments_are_valid_yaml_values():
    for path in (CONF / "experiment").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        assert "defaults" in data and "hydra" in data, path.name
