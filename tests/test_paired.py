"""cotfaith.paired: paired differences on shared questions, checked against hand computation."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from cotfaith.interventions.base import StatSettings
from cotfaith.metrics import summarize
from cotfaith.paired import (
    accuracy,
    adjust_pvalues,
    aoc,
    paired_difference,
    paired_from_tables,
)
from cotfaith.records import Record


def rec(q: str, intervention: str = "cot", *, correct: bool = True, **kw) -> dict:
    base = dict(
        task="t",
        question_id=q,
        intervention=intervention,
        condition=kw.pop("condition", "full"),
        sample=kw.pop("sample", 0),
        model="m",
        provider="fake",
        gold="A",
        n_choices=4,
        answer="A" if correct else "B",
        parse_status="ok",
        correct=correct,
    )
    base.update(kw)
    return asdict(Record(**base))


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(Record.__dataclass_fields__))


def answers(spec: dict[str, list[int]]) -> pd.DataFrame:
    """cot rows: question -> correct flags of its samples."""
    return frame(
        [
            rec(q, correct=bool(c), sample=s)
            for q, flags in spec.items()
            for s, c in enumerate(flags)
        ]
    )


# A: q1 2/2, q2 1/2, q3 1/2 -> 4/6; B: q1 1/2, q2 0/2, q3 2/2 -> 3/6; q4 only in B
A = answers({"q1": [1, 1], "q2": [0, 1], "q3": [1, 0]})
B = answers({"q1": [1, 0], "q2": [0, 0], "q3": [1, 1], "q4": [0, 0]})
# each row: how often q1, q2, q3 (sorted) are drawn
DRAWS = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [1, 1, 1]])


def test_accuracy_difference_by_hand():
    r = paired_difference(A, B, accuracy(), ci=0.5, draws=DRAWS)
    # q4 is not shared: B's estimate is over q1..q3 = 3/6
    assert r.n_shared == 3
    assert r.estimate_a == pytest.approx(4 / 6) and r.estimate_b == pytest.approx(3 / 6)
    assert r.diff == pytest.approx(1 / 6)
    # resampled differences: q1 only 1 - 1/2; q2 only 1/2 - 0; q3 only 1/2 - 1; all: 1/6
    # sorted [-1/2, 1/6, 1/2, 1/2]; 25% and 75% quantiles (linear): 0.0 and 0.5
    assert (r.low, r.high) == (pytest.approx(0.0), pytest.approx(0.5))
    # |d* - d| >= |d| for the first three draws, not for the last: p = (1 + 3) / (4 + 1)
    assert r.p == pytest.approx(0.8)


def test_the_same_draw_is_used_for_both_runs():
    # B is A with every answer flipped on q2 only: a draw without q2 sees no difference
    flipped = answers({"q1": [1, 1], "q2": [1, 0], "q3": [1, 0]})
    flipped.loc[flipped["question_id"] == "q2", "correct"] = [True, True]
    r = paired_difference(A, flipped, accuracy(), draws=np.array([[3, 0, 0], [0, 0, 3]]))
    assert r.diff == pytest.approx(4 / 6 - 5 / 6)
    assert r.low == r.high == pytest.approx(0.0)  # unpaired draws would disagree here


def test_identical_runs_differ_by_nothing():
    r = paired_difference(A, A.copy(), accuracy(), n_boot=200, seed=1)
    assert (r.diff, r.low, r.high, r.p) == (0.0, 0.0, 0.0, 1.0)


def test_seeded_bootstrap_is_reproducible_and_brackets_the_difference():
    rng = np.random.default_rng(3)
    a = answers({f"q{i}": list(rng.integers(0, 2, 4)) for i in range(40)})
    b = answers({f"q{i}": [1, 1, 1, 1] for i in range(40)})
    r1 = paired_difference(a, b, accuracy(), n_boot=500, seed=7)
    r2 = paired_difference(a, b, accuracy(), n_boot=500, seed=7)
    assert r1 == r2
    assert r1.low <= r1.diff <= r1.high < 0
    assert r1.p < 0.01


def test_tables_without_shared_questions_give_nan():
    ta = pd.DataFrame({"num": [1.0], "den": [1.0]}, index=["x"])
    tb = pd.DataFrame({"num": [1.0], "den": [1.0]}, index=["y"])
    r = paired_from_tables(ta, tb)
    assert r.n_shared == 0 and np.isnan(r.diff)


def curve(q: str, ys: list[int], sample: int = 0) -> list[dict]:
    n = len(ys) - 1
    return [
        rec(
            q,
            "truncation",
            sample=sample,
            condition=f"k={k}/{n}",
            n_steps=n,
            k=k,
            fraction=k / n,
            original_answer="A",
            same_answer=bool(y),
            answer="A" if y else "B",
        )
        for k, y in enumerate(ys)
    ]


def test_aoc_difference_by_hand_and_equal_to_the_summary():
    # a CoT's AOC = 1 - trapezoid area of its curve over x = k/n
    # A: q1 y=[0,1,1] -> area .25 + .5 = .75 -> .25; q2 y=[1,1,1] -> 0. AOC = .125
    # B: q1 y=[0,0,1] -> area .25 -> .75; q2 y=[0,1,1] -> .25.       AOC = .5
    run_a = frame([rec("q1"), rec("q2"), *curve("q1", [0, 1, 1]), *curve("q2", [1, 1, 1])])
    run_b = frame([rec("q1"), rec("q2"), *curve("q1", [0, 0, 1]), *curve("q2", [0, 1, 1])])
    r = paired_difference(run_a, run_b, aoc(), ci=0.5, draws=np.array([[2, 0], [0, 2]]))
    assert (r.estimate_a, r.estimate_b) == (pytest.approx(0.125), pytest.approx(0.5))
    assert r.diff == pytest.approx(-0.375)
    # draws: only q1 -> .25 - .75 = -.5; only q2 -> 0 - .25 = -.25
    assert (r.low, r.high) == (pytest.approx(-0.4375), pytest.approx(-0.3125))
    # |-.5 + .375| = .125 and |-.25 + .375| = .125 are both < .375: p = 1 / 3
    assert r.p == pytest.approx(1 / 3)
    # the same number the run's summary reports
    stats = StatSettings(n_bootstrap=10)
    for run, est in ((run_a, r.estimate_a), (run_b, r.estimate_b)):
        s = summarize(run, stats=stats).set_index("intervention")
        assert s.loc["truncation", "aoc"] == pytest.approx(est)
        assert s.loc["cot", "accuracy_cot"] == pytest.approx(1.0)


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted .005 .01 .03 .04 times 4 3 2 1 = .02 .03 .06 .04; running max .02 .03 .06 .06
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted times m / rank: .02 .02 .04 .04; running min from the top: .02 .02 .04 .04
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_adjustment_caps_at_one_and_keeps_nan():
    out = adjust_pvalues([0.5, float("nan"), 0.9], "holm")
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1]) and out[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="holm or bh"):
        adjust_pvalues([0.1], "bonferroni")
