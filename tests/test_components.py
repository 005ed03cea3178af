"""A new component is one module plus one YAML: proven with a throwaway intervention written
by the test, outside the package, found through COTFAITH_PLUGINS and Hydra's search path."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import load_records, run_cli, summary

MODULE = '''
"""A throwaway intervention: the answer after the CoT's first step only."""

from dataclasses import dataclass

from cotfaith.interventions.base import Intervention, Section
from cotfaith.registry import register


@dataclass
class FirstStepConfig:
    """First step only."""

    name: str = "first_step"
    label: str = "one"
    """A key of its own, to prove the typed config is used."""


@register("intervention", "first_step", config=FirstStepConfig)
class FirstStep(Intervention):
    """Answer after the first step of the CoT."""

    name = "first_step"
    scope = "trace"

    async def run_trace(self, ctx, trace):
        answered = await ctx.answer(trace.question, trace.prefix(min(1, trace.n_steps)))
        label = self.settings["label"]
        ctx.emit(
            trace.question, answered, intervention=self.name, condition=label,
            sample=trace.sample, reference=trace.reference, payload={"label": label},
        )

    @classmethod
    def summarize(cls, rows, group, stats):
        return {"first_step_same": float(rows["same_answer"].astype(float).mean())}

    @classmethod
    def section(cls, records, summary, fig_dir, stats):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.bar(["same"], [summary["first_step_same"].dropna().iloc[0]])
        path = fig_dir / "first_step.png"
        fig.savefig(path)
        plt.close(fig)
        return Section(title="First step only", explanation="A throwaway.",
                       figures={"First step figure": path})
'''

YAML = """\
# @package intervention.first_step
defaults:
  - /schema/intervention/first_step@_here_
  - _self_
label: two
"""


@pytest.fixture()
def plugin(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "first_step_plugin.py").write_text(textwrap.dedent(MODULE))
    conf = tmp_path / "plugin_conf" / "intervention"
    conf.mkdir(parents=True)
    (conf / "first_step.yaml").write_text(YAML)
    env = {"COTFAITH_PLUGINS": "first_step_plugin", "PYTHONPATH": str(tmp_path / "plugins")}
    search = f"hydra.searchpath=[file://{tmp_path / 'plugin_conf'}]"
    return tmp_path, env, search


@pytest.mark.slow
def test_a_new_intervention_is_one_module_plus_one_yaml(plugin):
    cwd, env, search = plugin
    helped = run_cli(cwd, "--help", search, env=env)
    assert "first_step" in helped.stdout
    run_cli(
        cwd,
        search,
        "intervention=[truncation,first_step]",
        "task.n_questions=6",
        "sampling.n_samples=2",
        "hydra.run.dir=run",
        env=env,
    )
    rows = [r for r in load_records(cwd / "run") if r["intervention"] == "first_step"]
    assert len(rows) == 12
    assert {r["payload"]["label"] for r in rows} == {"two"}  # the YAML's value, typed config
    s = summary(cwd / "run").set_index("intervention")
    assert 0 <= s.loc["first_step", "first_step_same"] <= 1
    assert (cwd / "run" / "figures" / "first_step.png").is_file()
    html = (cwd / "run" / "report.html").read_text()
    assert "First step only" in html and "First step figure" in html
    # a typo in the plugin's own key fails naming it, as for built-in components
    bad = run_cli(
        cwd,
        search,
        "intervention=[first_step]",
        "intervention.first_step.lable=x",
        env=env,
        check=False,
    )
    assert bad.returncode != 0 and "lable" in bad.stderr


def test_unknown_plugin_module_is_one_line(tmp_path):
    proc = run_cli(tmp_path, env={"COTFAITH_PLUGINS": "no_such_plugin_module"}, check=False)
    assert proc.returncode != 0
    assert "COTFAITH_PLUGINS" in proc.stderr and "no_such_plugin_module" in proc.stderr
    assert "Traceback" not in proc.stderr
