"""The mAP regression against numpy least squares, hand-computed standard errors and known coefficients."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cellbench.analysis import RegressionObservation, fit_regression, min_max_scale, regression_rows
from cellbench.errors import DataError


def _synthetic(n: int = 30, noise: float = 0.02, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_train = rng.integers(1, 500, n).astype(float)
    size = rng.uniform(80, 900, n)
    elong = rng.uniform(0.2, 1.0, n)
    scaled = [(v - v.min()) / (v.max() - v.min()) for v in (n_train, size, elong)]
    m = 0.3 + 0.2 * scaled[0] - 0.1 * scaled[1] + 0.15 * scaled[2] + rng.normal(0, noise, n)
    obs = [RegressionObservation(f"o{k}", m[k], n_train[k], size[k], elong[k]) for k in range(n)]
    return obs, np.column_stack([np.ones(n), *scaled]), m


def test_coefficients_equal_numpy_lstsq_and_hand_computed_intervals():
    obs, X, y = _synthetic()
    r = fit_regression(obs, group="m1")
    assert r.formula == "m ~ 1 + N + S + E" and r.n_obs == 30 and r.dropped == ()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    got = np.array([c.estimate for c in r.coefficients])
    np.testing.assert_allclose(got, beta, atol=1e-10)
    resid = y - X @ beta
    df = len(y) - X.shape[1]
    se = np.sqrt(np.diag(resid @ resid / df * np.linalg.inv(X.T @ X)))
    t = stats.t.ppf(0.975, df)
    np.testing.assert_allclose([c.std_error for c in r.coefficients], se, rtol=1e-9)
    np.testing.assert_allclose([c.low for c in r.coefficients], beta - t * se, rtol=1e-9)
    np.testing.assert_allclose([c.high for c in r.coefficients], beta + t * se, rtol=1e-9)
    np.testing.assert_allclose([c.p_value for c in r.coefficients], 2 * stats.t.sf(np.abs(beta / se), df),
                               rtol=1e-6, atol=1e-300)
    assert r.r_squared == pytest.approx(1 - resid @ resid / ((y - y.mean()) @ (y - y.mean())))


def test_known_coefficients_are_recovered():
    obs, _, _ = _synthetic(n=200, noise=0.005, seed=1)
    est = {c.term: c for c in fit_regression(obs).coefficients}
    for term, true in (("Intercept", 0.3), ("N", 0.2), ("S", -0.1), ("E", 0.15)):
        assert est[term].estimate == pytest.approx(true, abs=0.01)
        assert est[term].low < true < est[term].high
    assert est["N"].p_value < 1e-10


def test_constant_covariate_dropped_and_level():
    obs = [RegressionObservation(f"t{k}", 0.1 + 0.05 * k + 0.01 * (k % 2), 100, 50.0 + 10 * k, 0.6 + 0.01 * (k % 3))
           for k in range(8)]
    r = fit_regression(obs, level=0.9)
    assert r.formula == "m ~ 1 + S + E" and r.dropped[0].startswith("N (n_train_images)")
    assert r.scaling["S"] == {"field": "mean_cell_size", "min": 50.0, "max": 120.0}
    r95 = fit_regression(obs)
    width = lambda res: res.coefficients[1].high - res.coefficients[1].low  # noqa: E731
    assert width(r) < width(r95)


def test_too_few_observations_are_not_fitted():
    obs = [RegressionObservation(f"t{k}", 0.5 + 0.1 * k, k, 100.0 + k * k, 0.5 + 0.1 * k) for k in range(3)]
    r = fit_regression(obs)
    assert r.coefficients == () and "not fitted" in r.note
    rows = regression_rows([r])
    assert len(rows) == 1 and rows[0]["term"] is None and "not fitted" in rows[0]["note"]


def test_bad_values_refused_and_scaling():
    with pytest.raises(DataError, match="non-finite"):
        fit_regression([RegressionObservation("x", float("nan"), 1, 1, 1)] * 5)
    with pytest.raises(DataError, match="level"):
        fit_regression([], level=1.0)
    assert min_max_scale([3.0, 1.0, 2.0]).tolist() == [1.0, 0.0, 0.5]
    assert min_max_scale([]) is None and min_max_scale([1.0, np.inf]) is None
