"""Tests for `cotfaith.metrics` on hand-built records, checked against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cotfaith.metrics import (
    aoc_from_curves,
    aoc_with_ci,
    chance_agreement,
    early_answering_curves,
    summarize,
)
from cotfaith.records import Record


def record(**kw: Any) -> dict[str, Any]:
    base = dict(
        task="arith",
        question_id="q0",
        intervention="truncation",
        condition="",
        sample=0,
        model="m",
        provider="p",
        gold="A",
        n_choices=4,
        answer="A",
        parse_status="ok",
        correct=True,
    )
    base.update(kw)
    return asdict(Record(**base))


def cot_rows(
    qid: str,
    same: list[int | None],
    *,
    sample: int = 0,
    original: str | None = "A",
    model: str = "m",
    task: str = "arith",
    gold: str = "A",
) -> list[dict]:
    """Truncation rows k = 0..n for one CoT of n = len(same) - 1 steps.

    same[k] = 1: same answer as the complete CoT; 0: another letter; None: unparseable.
    """
    n = len(same) - 1
    out = []
    for k, s in enumerate(same):
        if original is None:
            answer, same_answer, status = "C", None, "ok"
        elif s is None:
            answer, same_answer, status = None, False, "unparseable"
        else:
            answer = original if s else ("B" if original != "B" else "C")
            same_answer, status = bool(s), "ok"
        out.append(
            record(
                question_id=qid,
                sample=sample,
                model=model,
                task=task,
                gold=gold,
                condition=f"k={k}/{n}",
                n_steps=n,
                k=k,
                fraction=k / n if n else 0.0,
                answer=answer,
                parse_status=status,
                correct=answer == gold,
                original_answer=original,
                same_answer=same_answer,
            )
        )
    return out


def frame(*groups: list[dict]) -> pd.DataFrame:
    rows = [r for g in groups for r in g]
    return pd.DataFrame(rows, columns=list(Record.__dataclass_fields__))


def both_aocs(df: pd.DataFrame) -> tuple[float, float]:
    """The paper's cell-mean AOC and the summary's per-CoT AOC; they agree when every CoT has
    all its points, which the old rule (unread = disagreement) guarantees."""
    point = aoc_with_ci(df, n_boot=50, unparseable="disagree")[0]
    return aoc_from_curves(early_answering_curves(df)), point


# --------------------------------------------------------------------------- AOC by hand


def test_single_cot_aoc_by_hand():
    # n = 2, same = [0, 1, 1] at k = 0, 1, 2 -> f = (0, 1, 1) on x = (0, .5, 1)
    # trapezoid area = .5 * (0 + 1) / 2 + .5 * (1 + 1) / 2 = .25 + .5 = .75 -> AOC = .25
    df = frame(cot_rows("q1", [0, 1, 1]))
    curve_aoc, point = both_aocs(df)
    assert curve_aoc == pytest.approx(0.25)
    assert point == pytest.approx(0.25)


def test_curves_hold_rate_fraction_and_count_per_cell():
    # two CoTs of n = 2: same (0,1,1) and (1,0,1) -> f = (.5, .5, 1), n = 2 in every cell
    df = frame(cot_rows("q1", [0, 1, 1]), cot_rows("q2", [1, 0, 1]))
    curves = early_answering_curves(df)
    assert list(curves["k"]) == [0, 1, 2]
    assert list(curves["fraction"]) == pytest.approx([0.0, 0.5, 1.0])
    assert list(curves["same_rate"]) == pytest.approx([0.5, 0.5, 1.0])
    assert list(curves["n"]) == [2, 2, 2]
    # area = .5*(.5+.5)/2 + .5*(.5+1)/2 = .25 + .375 = .625 -> AOC .375
    assert aoc_from_curves(curves) == pytest.approx(0.375)


def test_mixed_lengths_weighted_by_number_of_cots():
    # n = 1: CoTs (0,1) and (1,1) -> f_1 = (.5, 1) on x = (0, 1): area .75 -> AOC_1 = .25
    # n = 3: one CoT (0,0,1,1) on x = (0, 1/3, 2/3, 1):
    #        area = 1/3*0 + 1/3*(0+1)/2 + 1/3*(1+1)/2 = 1/6 + 1/3 = .5 -> AOC_3 = .5
    # weights by CoTs: w_1 = 2/3, w_3 = 1/3 -> AOC = 2/3*.25 + 1/3*.5 = 1/3
    # (an unweighted mean over lengths, or a weight by row count, would give .375)
    df = frame(cot_rows("q1", [0, 1]), cot_rows("q2", [1, 1]), cot_rows("q3", [0, 0, 1, 1]))
    curve_aoc, point = both_aocs(df)
    assert curve_aoc == pytest.approx(1 / 3)
    assert point == pytest.approx(1 / 3)


def test_all_same_gives_zero_and_never_same_before_the_end_gives_near_one():
    same = frame(cot_rows("q1", [1, 1, 1, 1]), cot_rows("q2", [1, 1]))
    assert both_aocs(same) == pytest.approx((0.0, 0.0))
    # n = 4, f = (0,0,0,0,1): area = 1/4 * (0 + 1)/2 = 1/8 -> AOC = 7/8
    late = frame(cot_rows("q1", [0, 0, 0, 0, 1]))
    assert both_aocs(late) == pytest.approx((7 / 8, 7 / 8))


def test_point_estimate_equals_aoc_from_curves_on_an_irregular_set():
    groups = [
        cot_rows("q1", [0, 1, 1]),
        cot_rows("q1", [1, 1, 1], sample=1),
        cot_rows("q2", [0, 0, 1, 1]),
        cot_rows("q3", [0, 1, 0, 1, 1]),
        cot_rows("q3", [1, 0, 1], sample=1),
        cot_rows("q4", [None, 1]),
        cot_rows("q5", [0, None, 1, 1, 1, 1]),
    ]
    df = frame(*groups)
    curve_aoc, point = both_aocs(df)
    assert 0 < point < 1
    assert point == pytest.approx(curve_aoc, abs=1e-12)


# --------------------------------------------------------------------------- exclusions


def test_rows_without_reference_answer_are_excluded():
    base = frame(cot_rows("q1", [0, 1, 1]))
    # a CoT whose complete-CoT answer was unparseable: it has no reference
    with_noref = frame(cot_rows("q1", [0, 1, 1]), cot_rows("q2", [0, 0, 0], original=None))
    assert both_aocs(with_noref) == pytest.approx((0.25, 0.25))
    assert list(early_answering_curves(with_noref)["n"]) == [1, 1, 1]
    assert both_aocs(base) == pytest.approx(both_aocs(with_noref))


def test_unparseable_answers_count_as_disagreement():
    # n = 1: parseable same answer at k=0 -> f = (1, 1) -> AOC 0
    ok = frame(cot_rows("q1", [1, 1]))
    assert both_aocs(ok) == pytest.approx((0.0, 0.0))
    # the k=0 answer unparseable (answer None, same_answer False) -> f = (0, 1): area .5 -> .5
    bad = frame(cot_rows("q1", [None, 1]))
    assert pd.isna(bad.loc[0, "answer"]) and not bad.loc[0, "same_answer"]
    assert both_aocs(bad) == pytest.approx((0.5, 0.5))
    # by default an unread answer is dropped: this CoT then lacks its k=0 point, so it is
    # left out rather than integrated over a shorter range
    assert math.isnan(aoc_with_ci(bad, n_boot=10)[0])


def test_other_interventions_are_ignored():
    df = frame(cot_rows("q1", [0, 1, 1]))
    other = frame(cot_rows("q2", [0, 0, 1]))
    other["intervention"] = "mistakes"
    mixed = pd.concat([df, other], ignore_index=True)
    assert both_aocs(mixed) == pytest.approx((0.25, 0.25))
    # and the other intervention is measured on its own when asked:
    # f = (0, 0, 1) on (0, .5, 1): area .25 -> AOC .75
    assert aoc_with_ci(mixed, "mistakes", n_boot=10)[0] == pytest.approx(0.75)


def test_no_rows_gives_nan():
    empty = frame(cot_rows("q1", [0, 1], original=None))
    assert all(math.isnan(x) for x in aoc_with_ci(empty, n_boot=10))
    assert early_answering_curves(empty).empty


# --------------------------------------------------------------------------- bootstrap CI

PATTERNS = [[0, 1, 1], [1, 1, 1], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]


def replicated(times: int) -> pd.DataFrame:
    groups = []
    for r in range(times):
        for i, same in enumerate(PATTERNS):
            groups.append(cot_rows(f"q{r}-{i}", same))
    return frame(*groups)


def test_ci_contains_point_and_narrows_with_more_questions():
    small = replicated(1)
    large = replicated(9)
    p_s, lo_s, hi_s = aoc_with_ci(small, n_boot=400, seed=1)
    p_l, lo_l, hi_l = aoc_with_ci(large, n_boot=400, seed=1)
    # f = (3/6, 4/6, 1): area = .5*(1/2+2/3)/2 + .5*(2/3+1)/2 = 7/24 + 10/24 = 17/24
    assert p_s == pytest.approx(7 / 24)
    assert p_l == pytest.approx(p_s)  # same proportions, more questions
    assert lo_s <= p_s <= hi_s
    assert lo_l <= p_l <= hi_l
    assert hi_s > lo_s
    # the CI of a 9x larger sample should be roughly 3x narrower; ask for clearly narrower
    assert (hi_l - lo_l) < 0.6 * (hi_s - lo_s)


def test_ci_is_deterministic_per_seed_and_clustered_by_question():
    df = replicated(2)
    assert aoc_with_ci(df, n_boot=200, seed=3) == aoc_with_ci(df, n_boot=200, seed=3)
    # one question only: no CI can be drawn from clusters
    one_q = frame(cot_rows("q1", [0, 1, 1]), cot_rows("q1", [1, 1, 1], sample=1))
    point, lo, hi = aoc_with_ci(one_q, n_boot=200)
    assert point == pytest.approx((0.25 + 0.0) / 2)
    assert math.isnan(lo) and math.isnan(hi)


def test_ci_resamples_questions_not_rows():
    # q1 has 5 CoTs that all change at k=0 (AOC .5 each), q2 has 5 that never change (0).
    # Rows are perfectly correlated within a question, so the bootstrap draws of {q1, q2}
    # give AOC in {0, .25, .5}: the 95% CI must span (nearly) the whole [0, .5].
    groups = [cot_rows("q1", [0, 1], sample=s) for s in range(5)]
    groups += [cot_rows("q2", [1, 1], sample=s) for s in range(5)]
    point, lo, hi = aoc_with_ci(frame(*groups), n_boot=400, seed=0)
    assert point == pytest.approx(0.25)
    assert lo == pytest.approx(0.0) and hi == pytest.approx(0.5)


# --------------------------------------------------------------------------- chance agreement


def ref_rows(qid: str, answers: list[str | None], model: str = "m") -> list[dict]:
    return [
        record(
            question_id=qid,
            intervention="cot",
            condition="full",
            sample=i,
            answer=a,
            parse_status="ok" if a else "unparseable",
            model=model,
        )
        for i, a in enumerate(answers)
    ]


def test_chance_agreement_by_hand():
    # A, A, B: pairs (AA, AB, AB) -> 1/3
    assert chance_agreement(frame(ref_rows("q1", ["A", "A", "B"]))) == pytest.approx(1 / 3)
    # q1: 1/3; q2 C, C: 1; q3 (one sample): no pair, skipped; q4 None, None: 0
    # mean over q1, q2, q4 = (1/3 + 1 + 0) / 3 = 4/9
    df = frame(
        ref_rows("q1", ["A", "A", "B"]),
        ref_rows("q2", ["C", "C"]),
        ref_rows("q3", ["A"]),
        ref_rows("q4", [None, None]),
    )
    assert chance_agreement(df) == pytest.approx(4 / 9)


def test_chance_agreement_none_never_agrees_and_only_reference_rows_count():
    # A, None, A: only the (A, A) pair agrees -> 1/3
    df = frame(ref_rows("q1", ["A", None, "A"]))
    assert chance_agreement(df) == pytest.approx(1 / 3)
    # truncation rows of the same question do not count as samples
    with_trunc = pd.concat([df, frame(cot_rows("q1", [1, 1, 1]))], ignore_index=True)
    assert chance_agreement(with_trunc) == pytest.approx(1 / 3)
    assert math.isnan(chance_agreement(frame(ref_rows("q1", ["A"]))))


# --------------------------------------------------------------------------- summarize


def no_cot_row(
    qid: str, answer: str, gold: str = "A", model: str = "m", task: str = "arith"
) -> dict:
    return record(
        question_id=qid,
        intervention="no_cot",
        condition="none",
        sample=None,
        answer=answer,
        gold=gold,
        correct=answer == gold,
        model=model,
        task=task,
    )


def summary_records() -> pd.DataFrame:
    groups = []
    for model in ("m1", "m2"):
        # cot rows: 4 CoTs, 3 correct -> accuracy_cot .75
        cot = ref_rows("q1", ["A", "A"], model=model) + ref_rows("q2", ["B", "C"], model=model)
        for r in cot:
            r["correct"] = r["answer"] == "A"
            r["gold"] = "A"
        cot[2]["answer"], cot[2]["correct"] = "A", True  # q2: A, C
        groups.append(cot)
        # no_cot rows: 1 of 2 correct -> .5
        groups.append([no_cot_row("q1", "A", model=model), no_cot_row("q2", "D", model=model)])
        # truncation: 3 CoTs with a reference + one without
        groups.append(cot_rows("q1", [0, 1, 1], model=model))
        groups.append(cot_rows("q1", [1, 1, 1], sample=1, model=model))
        groups.append(cot_rows("q2", [0, None, 1], model=model))
        groups.append(cot_rows("q2", [0, 0, 0], sample=1, original=None, model=model))
    return frame(*groups)


def test_summarize_one_row_per_model_task_intervention_with_controls():
    df = summary_records()
    out = summarize(df, n_boot=100)
    assert len(out) == 6
    assert not out.duplicated(["model", "task", "intervention"]).any()
    # the reference first, then interventions by name (no intervention is special here)
    assert list(out["intervention"]) == ["cot", "no_cot", "truncation"] * 2
    for model in ("m1", "m2"):
        rows = out[out["model"] == model]
        assert set(rows["accuracy_cot"]) == {0.75}  # cot rows: 3 of 4 correct
        assert set(rows["accuracy_no_cot"]) == {0.5}  # no_cot rows: 1 of 2 correct
        assert set(rows["n_questions"]) == {2}
        assert set(rows["n_cots"]) == {4}
        # chance: q1 A,A -> 1; q2 A,C -> 0 -> .5
        assert set(rows["chance_agreement"]) == {0.5}
        t = rows[rows["intervention"] == "truncation"].iloc[0]
        # three referenced CoTs of n=2, per CoT a = 1 - trapezoid:
        # q1/s0 (0,1,1): 1 - (.25 + .5) = .25; q1/s1 (1,1,1): 0;
        # q2/s0 (0,?,1): the unread middle point is dropped (default) and, being interior,
        # takes the mean of the other CoTs of length 2 at k=1 (1, 1) -> (0,1,1): .25
        # -> AOC (.25 + 0 + .25) / 3 = 1/6
        assert t["aoc"] == pytest.approx(1 / 6)
        assert t["aoc_ci_low"] <= t["aoc"] <= t["aoc_ci_high"]
        # sensitivity: as disagreement (0,0,1): 1 - .25 = .75 -> 1/3 (the old rule);
        # as agreement (0,1,1): .25 -> (.25 + 0 + .25) / 3 = 1/6
        assert t["aoc_if_drop"] == pytest.approx(1 / 6)
        assert t["aoc_if_disagree"] == pytest.approx(1 / 3)
        assert t["aoc_if_agree"] == pytest.approx(1 / 6)
        assert t["unread_points"] == 1
        # changed at k=0 in 2 of 3 CoTs; conditional AOC (.25 + .25) / 2; normalised by
        # a_max = (2n-1)/(2n) = .75: .25/.75
        assert t["aoc_given_changed"] == pytest.approx(0.25)
        assert t["aoc_normalised"] == pytest.approx(1 / 3)
        assert t["changed_at_k0"] == pytest.approx(2 / 3)
        assert t["no_reference"] == 3
        assert t["n_records"] == 12
        assert t["parse_failures"] == 1
        # interventions without curves carry no AOC
        c = rows[rows["intervention"] == "cot"].iloc[0]
        assert math.isnan(c["aoc"])
        assert c["n_records"] == 4


def test_summarize_accuracy_reads_the_right_intervention():
    df = summary_records()
    # flip every no_cot answer to correct: only accuracy_no_cot may move
    df2 = df.copy()
    df2.loc[df2["intervention"] == "no_cot", "correct"] = True
    out = summarize(df2, n_boot=10)
    assert set(out["accuracy_no_cot"]) == {1.0}
    assert set(out["accuracy_cot"]) == {0.75}
    # flip every cot answer to wrong: only accuracy_cot may move
    df3 = df.copy()
    df3.loc[df3["intervention"] == "cot", "correct"] = False
    out = summarize(df3, n_boot=10)
    assert set(out["accuracy_cot"]) == {0.0}
    assert set(out["accuracy_no_cot"]) == {0.5}


def test_summarize_counts_calls_and_cache_hits():
    df = summary_records()
    df["calls"] = 2
    df["cache_hits"] = 1
    out = summarize(df, n_boot=10)
    t = out[(out["model"] == "m1") & (out["intervention"] == "truncation")].iloc[0]
    assert t["calls"] == 24 and t["cache_hits"] == 12


def test_bootstrap_resamples_ignore_a_missing_point_rather_than_count_it_as_a_change():
    """A failed call leaves a hole in one CoT's curve; no resample may read it as 0 agreement."""
    from cotfaith.metrics import _aoc_matrix, truncation_rows

    rows = []
    for q, ks in (("q1", (0, 1, 2)), ("q2", (0, 2))):  # q2's k=1 call failed
        for k in ks:
            rows.append(
                dict(
                    model="m",
                    task="t",
                    question_id=q,
                    sample=0,
                    intervention="truncation",
                    n_steps=2,
                    k=k,
                    original_answer="A",
                    same_answer=True,
                    parse_status="ok",
                )
            )
    df = truncation_rows(pd.DataFrame(rows))
    # every point that exists agrees, so every resample (q2 alone included) has AOC 0
    resamples = np.array([[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]])
    assert np.allclose(_aoc_matrix(df, resamples), 0.0)


def test_per_cot_handles_rows_in_any_order_and_missing_points():
    """Rows as they come from concurrent calls (any order), with an interior gap (imputed from
    the length's curve), a CoT missing its k=0 (left out and counted), and CoTs of two lengths."""
    from cotfaith.curvestats import per_cot

    rows = [
        # q1/s0, n=2: (0, 1, 1) -> a = 1 - (.25 + .5) = .25
        ("q1", 0, 2, 2, True),
        ("q1", 0, 2, 0, False),
        ("q1", 0, 2, 1, True),
        # q2/s0, n=2: (0, ?, 1): k=1 imputed from q1/s0 (1) -> .25
        ("q2", 0, 2, 2, True),
        ("q2", 0, 2, 0, False),
        # q3/s1, n=3 without k=0: left out
        ("q3", 1, 3, 3, True),
        ("q3", 1, 3, 1, True),
        # q4/s0, n=1: (1, 1) -> 0
        ("q4", 0, 1, 1, True),
        ("q4", 0, 1, 0, True),
    ]
    df = pd.DataFrame(rows, columns=["question_id", "sample", "n_steps", "k", "same_answer"])
    df = df.sample(frac=1.0, random_state=3)  # shuffled
    cots, dropped = per_cot(df)
    got = {(r.question_id, r.n_steps): r.a for r in cots.itertuples()}
    assert dropped == 1
    assert got == pytest.approx({("q1", 2): 0.25, ("q2", 2): 0.25, ("q4", 1): 0.0})
    changed = {r.question_id: r.changed0 for r in cots.itertuples()}
    assert changed == {"q1": 1.0, "q2": 1.0, "q4": 0.0}


def test_two_backends_sharing_a_model_name_never_pool():
    """Issue 9: runs keyed by backend identity, not by model name alone."""
    a = cot_rows("q1", [0, 1, 1]) + ref_rows("q1", ["A"])
    b = cot_rows("q1", [1, 1, 1]) + ref_rows("q1", ["A"])
    for r in a:
        r["backend_key"] = "aaaaaaaaaa"
    for r in b:
        r["backend_key"] = "bbbbbbbbbb"
    out = summarize(frame(a, b), n_boot=10)
    trunc = out[out["intervention"] == "truncation"].set_index("model")
    assert sorted(trunc.index) == ["m [aaaaaa]", "m [bbbbbb]"]
    assert trunc.loc["m [aaaaaa]", "aoc"] == pytest.approx(0.25)
    assert trunc.loc["m [bbbbbb]", "aoc"] == pytest.approx(0.0)


def test_summarize_counts_distinct_calls_once_in_the_first_summary_row():
    """A call held by several rows counts once (calls, retries, cache hits, tokens), in the
    first summary row holding it: the reference answer re-asked at k = n belongs to `cot`, a
    retried k = 0 prefix shared by two samples counts its retries once."""

    def call(key: str, retries: int = 0, cached: bool = False, role: str = "model") -> dict:
        return dict(
            key=key,
            role=role,
            cached=cached,
            input_tokens=10,
            output_tokens=1,
            cached_input_tokens=0,
            reasoning_tokens=0,
            cost_usd=0.5,
            retries=retries,
        )

    ref = ref_rows("q1", ["A", "A"])
    ref[0]["call_log"] = [call("ref0", retries=2), call("cot0", retries=1)]
    ref[1]["call_log"] = [call("ref1"), call("cot1")]
    trunc = cot_rows("q1", [0, 1, 1]) + cot_rows("q1", [0, 1], sample=1)
    logs = [
        [call("k0", retries=1)],  # sample 0, k = 0: the empty prefix both samples ask
        [call("s0k1")],
        [call("ref0", cached=True)],  # k = n: the reference answer again
        [call("k0", retries=1, cached=True)],  # sample 1 shared the call in flight
        [call("s1k1", role="mistake_model")],
    ]
    for row, log in zip(trunc, logs, strict=True):
        row["call_log"] = log
        row["retries"] = sum(c["retries"] for c in log)
        row["calls"] = len(log)
    out = summarize(frame(ref, trunc), n_boot=10).set_index("intervention")
    assert out.loc["cot", "calls"] == 4 and out.loc["cot", "retries"] == 3
    assert out.loc["truncation", "calls"] == 3  # k0, s0k1, s1k1: ref0 is the reference's
    assert out.loc["truncation", "retries"] == 1  # the rows say 2
    assert out.loc["truncation", "cache_hits"] == 0  # k0 was sent (by sample 0's row)
    assert out.loc["truncation", "input_tokens"] == 30
    assert out.loc["truncation", "mistake_model_calls"] == 1
    assert out["cost_usd"].sum() == pytest.approx(0.5 * 7)
    assert out["cost_usd_this_run"].sum() == pytest.approx(0.5 * 7)


def test_a_call_met_first_as_a_shared_copy_counts_what_its_send_did():
    """The first row holding a call may hold the copy another row's send shared (in flight):
    the call was still sent, retried and paid for by this run."""

    def call(retries: int, cached: bool) -> dict:
        return dict(
            key="K",
            role="model",
            cached=cached,
            input_tokens=10,
            output_tokens=1,
            cached_input_tokens=0,
            reasoning_tokens=0,
            cost_usd=1.0,
            retries=retries,
        )

    ref = ref_rows("q1", ["A"])
    ref[0]["call_log"] = []
    trunc = cot_rows("q1", [0, 1])
    for row, entry in zip(trunc, [call(0, cached=True), call(2, cached=False)], strict=True):
        row["call_log"] = [entry]
    out = summarize(frame(ref, trunc), n_boot=10).set_index("intervention")
    row = out.loc["truncation"]
    assert (row["calls"], row["cache_hits"], row["retries"]) == (1, 0, 2)
    assert row["cost_usd_this_run"] == pytest.approx(1.0)
