"""cotfaith: does a model's chain of thought actually drive its answer?

Data flows one way: config -> task -> stage 1 (sample CoTs) -> stage 2 (interventions) ->
answers -> tidy records (records.jsonl) -> metrics -> figures and report.

From Python (a notebook, a script), see cotfaith.notebook:

    from cotfaith import run, load_run
    result = run({"task.n_questions": 6, "sampling.n_samples": 2})
    result.summary, result.records          # pandas DataFrames
    sweep = load_run("outputs/multirun/<date>/<time>")   # every job, overrides as columns
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cotfaith.notebook import Result, load_run, run

__all__ = ["Result", "__version__", "load_run", "run"]

_API = {"run", "load_run", "Result"}


def __getattr__(name: str) -> Any:
    # the API and the version are looked up on first use, so `import cotfaith.<module>` stays
    # light, and the `cotfaith` command reaches its Ctrl-C handling (in __main__) at once
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("cotfaith")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name in _API:
        from cotfaith import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'cotfaith' has no attribute {name!r}")
