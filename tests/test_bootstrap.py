"""The cluster bootstrap: resamples drawn in blocks are the same resamples, and the BCa interval
agrees with an independent implementation where one is installed."""

from __future__ import annotations

import numpy as np
import pytest

from cotfaith import bootstrap


@pytest.mark.parametrize(("q", "n_boot"), [(2, 7), (50, 1000), (333, 250), (40, 1)])
def test_blocked_resamples_are_the_whole_matrix_resamples(q: int, n_boot: int) -> None:
    rng = np.random.default_rng(q)
    num, den = rng.random(q), rng.random(q) + 0.5
    w = bootstrap.draws(q, n_boot, seed=11)
    whole = (w @ num) / (w @ den)
    blocked = bootstrap._ratios(num, den, n_boot, seed=11)
    assert blocked.shape == (n_boot,)
    # the same draws; only the summation order of the matrix product may differ
    np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=0)


def test_ratio_interval_covers_and_matches_scipy_bca() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    q = 200
    den = rng.integers(1, 6, size=q).astype(float)
    num = rng.binomial(den.astype(int), 0.3).astype(float)
    ours = bootstrap.ratio_interval(num, den, n_boot=4000, seed=1)
    ref = scipy_stats.bootstrap(
        (num, den),
        lambda n, d: n.sum() / d.sum(),
        paired=True,
        vectorized=False,
        n_resamples=4000,
        method="BCa",
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert ours.low < ours.estimate < ours.high
    # two independent sets of 4000 resamples: the ends agree to Monte Carlo error
    width = ours.high - ours.low
    assert abs(ours.low - ref.low) < 0.05 * width and abs(ours.high - ref.high) < 0.05 * width
