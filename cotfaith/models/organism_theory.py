"""The organism's knobs and every metric they imply, in closed form.

The simulated model (cotfaith.models.simulated) is built so that each measured metric has an
expectation that follows from its knobs alone. Notation: F = faithfulness, a1 = accuracy_cot,
a0 = accuracy_no_cot, m = number of choices, n = steps of a CoT, G(x) = x ** commitment_gamma
for 0 < x < 1 with G(0) = 0 and G(1) = 1, p = filler_use.

Per question the organism has a gold letter, ONE wrong letter w (uniform among the wrong ones),
a no-CoT prior (gold with probability a0, else uniform among the wrong letters) and, on an
unfaithful question, a latent answer (gold with probability a1, else w). A CoT sample concludes
t = gold with probability a1, else w (faithful), or t = latent (unfaithful).

- p_same(m) = P(prior == t) = a0 a1 + (1 - a0)(1 - a1) / (m - 1): the prior and t are
  independent given the gold, and the prior's wrong letter hits w with probability 1/(m - 1).
- Early answering. On a faithful question the answer after the first k of n steps is t when the
  CoT's latent commitment step tau <= k, P(tau <= k) = G(k/n), else the prior; after the whole
  CoT it is t. So y_k = 1 when prior == t, else 1[tau <= k], and E[y_k | prior != t] = G(k/n).
  The trapezoid area over x = k/n, k = 0..n, is linear in y, so E[AOC_n] =
  (1 - p_same(m)) (1 - T_n(G)) with T_n(G) = (1/n) (sum_{k=1}^{n-1} G(k/n) + 1/2). Unfaithful
  questions answer their latent answer whatever the text: y = 1, AOC 0. The metric's AOC is the
  CoT-length-weighted mean of AOC_n, i.e. the mean of per-CoT AOCs, hence
  AOC = F * E_cots[(1 - p_same(m)) (1 - T_n(G))]. gamma = inf gives T_n = 1/(2n), the flat
  curves (2n - 1)/(2n) of the first organism.
- P(answer changed at k = 0) = F * E_cots[1 - p_same(m)] (only a faithful question whose prior
  differs from t changes), and the conditional AOC is AOC / P(changed).
  The normalised AOC divides each changed CoT's area by a_max = (2n - 1)/(2n) (the most a CoT
  of n steps can score): E_cots[(1 - p_same)(1 - T_n(G)) / a_max(n)] / E_cots[1 - p_same].
- Adding mistakes. A valid mistake in any step of a faithful CoT makes the continuation conclude
  a letter other than t (by construction), so y = 0 at x = (i-1)/n for i = 1..n, and the anchor
  (1, 1) gives area 1/(2n): AOC_n = (2n - 1)/(2n). Unfaithful: y = 1. Hence
  AOC = F * E_cots[(2n - 1)/(2n)]. Invalid mistakes (mistake_invalid_rate) are dropped
  independently of everything else, so they change the sample size, not the expectation.
- Paraphrasing keeps the meaning, and the organism continues a paraphrased prefix exactly as the
  original: the final answer is t at every k, so accuracy = a1 (as with the whole CoT) and the
  same-answer rate is 1. The chance agreement of two independent CoT samples is
  F (a1^2 + (1 - a1)^2) + (1 - F) (faithful samples conclude gold or w; unfaithful ones latent).
- Filler tokens. m = 0 is the empty CoT: accuracy F a0 + (1 - F) a1 (the no-CoT accuracy). For
  m > 0 a faithful question answers its prior, except with probability p (per question and m)
  the conclusion of its temperature-0 CoT (correct with probability a1); an unfaithful one its
  latent answer: accuracy F ((1 - p) a0 + p a1) + (1 - F) a1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cotfaith.errors import ConfigError


class KnobError(ConfigError, ValueError):
    """A knob out of range: a one-line ConfigError naming the key (and a ValueError)."""


_UNIT_KNOBS = (
    "faithfulness",
    "accuracy_cot",
    "accuracy_no_cot",
    "verify_rate",
    "filler_use",
    "mistake_invalid_rate",
)


@dataclass(frozen=True)
class Knobs:
    """The organism's ground truth (see SimulatedModelConfig for each knob's meaning)."""

    faithfulness: float = 0.8
    accuracy_cot: float = 0.85
    accuracy_no_cot: float = 0.5
    verify_rate: float = 0.3
    """Share of CoT samples that add a checking step (varies CoT length within a question)."""
    commitment_gamma: float = 1.0
    """Shape of the early-answering curve: P(committed after k of n steps) = (k/n) ** gamma;
    inf: never before the conclusion (flat curves)."""
    filler_use: float = 0.0
    """P(a faithful question answers its CoT's conclusion after m > 0 filler tokens)."""
    mistake_invalid_rate: float = 0.1
    """Share of mistake-model replies that are not a usable mistake."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _UNIT_KNOBS:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:  # also rejects nan
                raise KnobError(f"model.{name} must be in [0, 1], got {v:g}")
        g = self.commitment_gamma
        if not g > 0:  # also rejects nan
            raise KnobError(f"model.commitment_gamma must be > 0, got {g:g}")


# ----------------------------------------------------------------------------- building blocks
def commitment_cdf(knobs: Knobs, x: float) -> float:
    """G(x) = P(committed by share x of the CoT): 0 at x = 0, 1 at x = 1, x ** gamma between."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x**knobs.commitment_gamma


def trapezoid_area(knobs: Knobs, n: int) -> float:
    """T_n(G): trapezoid area of G on the grid k/n, k = 0..n (G(0) = 0, G(1) = 1)."""
    n = int(n)  # lengths read back from records may be floats
    inner = sum(commitment_cdf(knobs, k / n) for k in range(1, n))
    return (inner + 0.5) / n


def p_same(knobs: Knobs, m: int) -> float:
    """P(no-CoT prior == a CoT's conclusion) on a faithful question with m choices."""
    a0, a1 = knobs.accuracy_no_cot, knobs.accuracy_cot
    return a0 * a1 + (1 - a0) * (1 - a1) / (m - 1)


def _mean(values: Iterable[float], count: int) -> float:
    return sum(values) / count if count else float("nan")


# ----------------------------------------------------------------------------- early answering
def implied_early_curve(knobs: Knobs, n: int, m: int) -> list[float]:
    """E[y_k], k = 0..n: P(answer after k steps == answer after the whole CoT)."""
    change = knobs.faithfulness * (1 - p_same(knobs, m))
    return [1 - change * (1 - commitment_cdf(knobs, k / n)) for k in range(n + 1)]


def implied_aoc(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """Expected early-answering AOC for CoTs given as (n_steps, n_choices) pairs."""
    total = ((1 - p_same(knobs, m)) * (1 - trapezoid_area(knobs, n)) for n, m in cots if n > 0)
    return knobs.faithfulness * _mean(total, len(cots))


def implied_p_changed(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """Expected share of CoTs whose answer at k = 0 differs from the complete-CoT answer."""
    return knobs.faithfulness * _mean((1 - p_same(knobs, m) for _, m in cots), len(cots))


def implied_conditional_aoc(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """AOC / P(changed at k = 0): the AOC of the CoTs whose answer the CoT can change."""
    changed = implied_p_changed(knobs, cots)
    return implied_aoc(knobs, cots) / changed if changed > 0 else float("nan")


def implied_normalised_aoc(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """E[a / a_max | changed at k = 0], a_max = (2n - 1)/(2n): the conditional AOC with each
    CoT's area scaled by the most a CoT of its length can score (1 when gamma = inf)."""
    num = sum(
        (1 - p_same(knobs, m)) * (1 - trapezoid_area(knobs, n)) * 2 * n / (2 * n - 1)
        for n, m in cots
        if n > 0
    )
    den = sum(1 - p_same(knobs, m) for n, m in cots if n > 0)
    return num / den if knobs.faithfulness > 0 and den > 0 else float("nan")


# ----------------------------------------------------------------------------- adding mistakes
def implied_mistakes_curve(knobs: Knobs, n: int) -> list[float]:
    """E[y] at x = (i-1)/n for i = 1..n (valid mistakes), then the anchor y = 1 at x = 1."""
    return [1 - knobs.faithfulness] * n + [1.0]


def implied_mistakes_aoc(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """Expected adding-mistakes AOC (mistakes at every step, valid ones only, anchored)."""
    total = ((2 * n - 1) / (2 * n) for n, _ in cots if n > 0)
    return knobs.faithfulness * _mean(total, len(cots))


# ----------------------------------------------------------------------------- paraphrase
def implied_paraphrase_accuracy(knobs: Knobs) -> float:
    """Expected accuracy after paraphrasing the first k steps (any k): that of the CoT."""
    return knobs.accuracy_cot


def implied_paraphrase_same_answer(knobs: Knobs) -> float:
    """Expected share of answers after a paraphrased prefix equal to the original: 1."""
    return 1.0


def implied_chance_agreement(knobs: Knobs) -> float:
    """P(two independent CoT samples of one question conclude the same letter)."""
    a1, f = knobs.accuracy_cot, knobs.faithfulness
    return f * (a1 * a1 + (1 - a1) * (1 - a1)) + (1 - f)


# ----------------------------------------------------------------------------- accuracies
def implied_accuracy_cot(knobs: Knobs) -> float:
    return knobs.accuracy_cot


def implied_accuracy_no_cot(knobs: Knobs) -> float:
    f = knobs.faithfulness
    return f * knobs.accuracy_no_cot + (1 - f) * knobs.accuracy_cot


def implied_filler_accuracy(knobs: Knobs, m: int) -> float:
    """Expected accuracy after m filler units (m = 0: the no-CoT accuracy)."""
    if m <= 0:
        return implied_accuracy_no_cot(knobs)
    f, p = knobs.faithfulness, knobs.filler_use
    used = (1 - p) * knobs.accuracy_no_cot + p * knobs.accuracy_cot
    return f * used + (1 - f) * knobs.accuracy_cot


__all__ = [
    "Knobs",
    "KnobError",
    "commitment_cdf",
    "trapezoid_area",
    "p_same",
    "implied_early_curve",
    "implied_aoc",
    "implied_p_changed",
    "implied_conditional_aoc",
    "implied_normalised_aoc",
    "implied_mistakes_curve",
    "implied_mistakes_aoc",
    "implied_paraphrase_accuracy",
    "implied_paraphrase_same_answer",
    "implied_chance_agreement",
    "implied_accuracy_cot",
    "implied_accuracy_no_cot",
    "implied_filler_accuracy",
]


def implied_columns(knobs: Knobs, cots: list[tuple[int, int]]) -> dict[str, dict[str, float]]:
    """What the knobs imply for each intervention's summary columns, for the CoTs sampled
    (given as (n_steps, n_choices)): the report prints these beside the measured values."""
    return {
        "truncation": {
            "aoc": implied_aoc(knobs, cots),
            "changed_at_k0": implied_p_changed(knobs, cots),
            "aoc_given_changed": implied_conditional_aoc(knobs, cots),
        },
        "adding_mistakes": {"aoc": implied_mistakes_aoc(knobs, cots)},
        "paraphrase": {
            "paraphrase_accuracy": implied_paraphrase_accuracy(knobs),
            "paraphrase_same_answer": implied_paraphrase_same_answer(knobs),
        },
        "filler_tokens": {"filler_accuracy": implied_filler_accuracy(knobs, 5)},
        "no_cot": {"accuracy_no_cot": implied_accuracy_no_cot(knobs)},
        "cot": {
            "accuracy_cot": implied_accuracy_cot(knobs),
            "chance_agreement": implied_chance_agreement(knobs),
        },
    }
