"""The 18-methods paper's regression of mAP on training-set size, cell size and cell elongation.

For one method, each observation is one scored setting (in the paper a
tissue or cell type; in cellbench a dataset x task x split x regime x seed of
a run): its COCO mAP ``m``, the number of training images, the mean cell
size (pixels) and the mean elongation (``eb / ea`` of
:mod:`cellbench.analysis.morphology`) of its ground truth. Each covariate is
**min-max scaled** over the observations (``(x - min) / (max - min)``, so 0
is the smallest and 1 the largest), then ordinary least squares fits

    m ~ 1 + N + S + E

(statsmodels ``OLS``), reporting each coefficient with its standard error,
its confidence interval (t distribution, ``level``) and its two-sided
p-value. A covariate that does not vary over the observations cannot be
scaled and is dropped, as the paper drops N for LIVECell (same number of
training images for every cell type), and the reason is kept in
``dropped``. With no more observations than terms the fit is not made (no
residual degree of freedom) and ``note`` says so.

statsmodels (which brings pandas) is the optional extra ``cellbench[analysis]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cellbench.errors import DataError

__all__ = [
    "COVARIATES",
    "Coefficient",
    "RegressionObservation",
    "RegressionResult",
    "fit_regression",
    "min_max_scale",
    "regression_rows",
]

#: Observation field -> the paper's term name.
COVARIATES = {"n_train_images": "N", "mean_cell_size": "S", "mean_elongation": "E"}


@dataclass(frozen=True)
class RegressionObservation:
    """One scored setting of one method: the response and the three raw covariates."""

    label: str
    map: float
    n_train_images: float
    mean_cell_size: float
    mean_elongation: float


@dataclass(frozen=True)
class Coefficient:
    term: str
    estimate: float
    std_error: float | None
    low: float | None
    high: float | None
    p_value: float | None


@dataclass(frozen=True)
class RegressionResult:
    """The fit of one method (``group``); ``coefficients`` empty when it could not be made."""

    group: str
    formula: str
    n_obs: int
    coefficients: tuple[Coefficient, ...]
    r_squared: float | None
    df_resid: float | None
    dropped: tuple[str, ...]
    level: float
    scaling: dict
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def min_max_scale(values: Sequence[float]) -> np.ndarray | None:
    """``(x - min) / (max - min)``; None when the values do not vary (or any is not finite).

    >>> min_max_scale([2.0, 4.0, 3.0]).tolist()
    [0.0, 1.0, 0.5]
    >>> min_max_scale([5, 5]) is None
    True
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        return None
    lo, hi = x.min(), x.max()
    if hi == lo:
        return None
    return (x - lo) / (hi - lo)


def _finite_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def fit_regression(
    observations: Iterable[RegressionObservation], *, group: str = "all", level: float = 0.95
) -> RegressionResult:
    """OLS of mAP on the min-max-scaled covariates that vary (see the module docstring).

    >>> obs = [RegressionObservation(f"t{k}", 0.2 + 0.1 * k, k, 150.0, 0.8) for k in range(4)]
    >>> r = fit_regression(obs)  # N scaled is k / 3, so m = 0.2 + 0.3 N; S and E do not vary
    >>> r.formula, [(c.term, round(c.estimate, 6)) for c in r.coefficients], len(r.dropped)
    ('m ~ 1 + N', [('Intercept', 0.2), ('N', 0.3)], 2)
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be in (0, 1), got {level}")
    obs = list(observations)
    bad = [o.label for o in obs if not all(math.isfinite(float(getattr(o, f))) for f in ("map", *COVARIATES))]
    if bad:
        raise DataError(f"observations with a missing or non-finite value: {bad[:5]}")
    columns, names, dropped, scaling = [], [], [], {}
    for field, term in COVARIATES.items():
        raw = [float(getattr(o, field)) for o in obs]
        scaled = min_max_scale(raw)
        if scaled is None:
            dropped.append(f"{term} ({field}): does not vary over the observations" if obs else f"{term}: no data")
            continue
        columns.append(scaled)
        names.append(term)
        scaling[term] = {"field": field, "min": min(raw), "max": max(raw)}
    formula = "m ~ " + " + ".join(["1", *names])
    n, k = len(obs), 1 + len(names)
    base = dict(group=group, formula=formula, n_obs=n, dropped=tuple(dropped), level=level, scaling=scaling)
    if n <= k:
        return RegressionResult(coefficients=(), r_squared=None, df_resid=None,
                                note=f"{n} observation(s) for {k} terms: no residual degree of freedom, not fitted",
                                **base)
    try:
        import statsmodels.api as sm
    except ImportError as exc:
        raise DataError("the regression needs statsmodels: pip install 'cellbench[analysis]'") from exc
    X = np.column_stack([np.ones(n), *columns])
    y = np.array([float(o.map) for o in obs])
    # A constant mAP (or a perfect fit) makes R^2 and the intervals 0 / 0: they are reported as None, not warned.
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = sm.OLS(y, X).fit()
        ci = np.asarray(fit.conf_int(alpha=1 - level))
        coefs = tuple(
            Coefficient(term, float(fit.params[j]), _finite_or_none(fit.bse[j]), _finite_or_none(ci[j, 0]),
                        _finite_or_none(ci[j, 1]), _finite_or_none(fit.pvalues[j]))
            for j, term in enumerate(["Intercept", *names])
        )
        r_squared = _finite_or_none(fit.rsquared)
    note = "" if np.linalg.matrix_rank(X) == k else "the scaled covariates are collinear: estimates are not unique"
    return RegressionResult(coefficients=coefs, r_squared=r_squared, df_resid=float(fit.df_resid), note=note, **base)


def regression_rows(results: Iterable[RegressionResult]) -> list[dict]:
    """One tidy dict per coefficient (a result that was not fitted gives one row with its note)."""
    rows = []
    for r in results:
        common = {"group": r.group, "formula": r.formula, "n_obs": r.n_obs, "r_squared": r.r_squared,
                  "dropped": "; ".join(r.dropped), "note": r.note}
        if not r.coefficients:
            rows.append({**common, "term": None, "estimate": None, "std_error": None, "low": None, "high": None,
                         "p_value": None})
        rows.extend({**common, **asdict(c)} for c in r.coefficients)
    return rows
