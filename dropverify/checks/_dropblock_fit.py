"""Which DropBlock is this? Maximum-likelihood identification of the seed scheme, gamma and
gamma rule from measured masks (pure numpy/scipy, vectorised over positions).

Data: per-position dropped counts ``c_i`` over ``n`` independent units (one unit = one
(batch item, channel) map, or one batch item's map when the channels share a mask). Under
seed scheme ``s`` a position covered by ``K_i`` admissible seeds is dropped with probability
``q_i(g) = 1 - (1 - g)^K_i``, so each ``c_i`` is exactly Binomial(n, q_i). Positions inside
one unit are dependent (overlapping blocks), so the product of these binomials is a
*composite* (independence) likelihood: its maximiser is consistent, but its curvature
overstates the information. The interval is therefore the likelihood-ratio interval with the
Godambe (sandwich) adjustment: ``{g : 2 (l(g_hat) - l(g)) * H / J <= chi2_1(level)}``, with
``H`` the observed information and ``J`` the variance of the score across units, estimated
from a sample of the units' dropped maps (the score is linear in a unit's map), or, without
one, computed from the fitted model's exact pair probabilities. Coverage is asymptotic (large
n), checked by simulation in the tests.

The fit is parametrised by ``t = -log(1 - g)``, in which the log-likelihood
``l(t) = sum_i c_i log(1 - exp(-K_i t)) - (n - c_i) K_i t`` is concave: one maximum, found
as the root of the (decreasing) score with brentq.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2

from ..variants import _dropblock_theory as theory

SCHEMES: Tuple[str, ...] = theory.SEED_REGIONS
RULES: Tuple[str, ...] = ("paper", "uncorrected", "exact")
SCHEME_WORDS = {"valid": "seeds only where the whole block fits (valid region)",
                "anywhere": "seeds over the whole map"}
SANDWICH_UNITS = 4096  # unit maps kept for the empirical score variance (relative SE ~ sqrt(2/m) = 2 %)


def rule_words(rule: str, rank: int) -> str:
    """The gamma rule in words, e.g. ``p/bs^2 (uncorrected)``."""
    return {"paper": f"p/bs^{rank} x map/(map - bs + 1) (paper)",
            "uncorrected": f"p/bs^{rank} (uncorrected)",
            "exact": "the exact rule (mean rate = p)"}[rule]


@dataclass(frozen=True)
class SchemeFit:
    """The fit under one seed scheme. gamma in [0, 1]; ci at ``level`` (sandwich-adjusted LR
    interval); loglik the maximised composite log-likelihood (nats); dispersion = J / H, the
    factor by which dependence between positions widens the interval (1: independent)."""

    scheme: str
    gamma: float
    ci: Tuple[float, float]
    level: float
    loglik: float
    dispersion: float


@dataclass(frozen=True)
class Identification:
    """Both schemes' fits, the identified scheme (larger maximised log-likelihood; both models
    have one parameter), the gamma rules the identified fit matches, and the units used."""

    fits: Mapping[str, SchemeFit]
    scheme: str
    log_likelihood_ratio: float          # loglik(identified) - loglik(other), nats, >= 0
    distinguishable: bool                # False when both schemes give the same map (e.g. bs = 1)
    rule_gammas: Mapping[str, float]     # candidate rule -> gamma, for the identified scheme
    matched_rules: Tuple[str, ...]       # rules whose gamma lies inside the identified fit's CI
    nearest_rule: str
    relative_gap: float                  # fitted / nearest rule's gamma - 1
    units: int
    channels_shared: Optional[bool] = None

    @property
    def fit(self) -> SchemeFit:
        return self.fits[self.scheme]

    def as_details(self) -> Dict[str, Any]:
        """JSON-ready details for a check result."""
        return {
            "identified_scheme": self.scheme,
            "schemes_distinguishable": self.distinguishable,
            # valid minus anywhere (> 0: the valid scheme fits better), as the reports always read it
            "log_likelihood_ratio": (self.fits["valid"].loglik - self.fits["anywhere"].loglik
                                     if {"valid", "anywhere"} <= set(self.fits) else None),
            "log_likelihood_ratio_identified": self.log_likelihood_ratio,
            "fits_by_scheme": {s: {"gamma": f.gamma, "ci": list(f.ci), "loglik": f.loglik,
                                   "dispersion": f.dispersion} for s, f in self.fits.items()},
            "loglik_by_scheme": {s: f.loglik for s, f in self.fits.items()},
            "fitted_gamma": self.fit.gamma, "fitted_gamma_ci": list(self.fit.ci),
            "fitted_gamma_ci_level": self.fit.level,
            "gamma_by_rule": dict(self.rule_gammas), "matched_gamma_rules": list(self.matched_rules),
            "nearest_gamma_rule": self.nearest_rule, "gamma_relative_gap": self.relative_gap,
            "fit_units": self.units, "channels_shared": self.channels_shared,
        }


# ------------------------------------------------------------------------------ likelihood

def _as_t(g: float) -> float:
    return math.inf if g >= 1.0 else -math.log1p(-g)


def _as_g(t: float) -> float:
    return 1.0 if math.isinf(t) else float(-math.expm1(-t))


def _flat(counts: np.ndarray, coverage: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    c = np.asarray(counts, np.float64).ravel()
    k = np.asarray(coverage, np.float64).ravel()
    if c.shape != k.shape:
        raise ValueError(f"counts has {c.size} positions, coverage {k.size}")
    return c, k


def _loglik_t(t: float, c: np.ndarray, n: int, k: np.ndarray) -> float:
    if t <= 0.0:
        return 0.0 if not np.any(c > 0) else -math.inf
    if math.isinf(t):
        return 0.0 if np.all(c >= n) else -math.inf
    with np.errstate(divide="ignore"):
        drop = np.where(c > 0, c * np.log(-np.expm1(-k * t)), 0.0)
    return float(np.sum(drop) - np.sum((n - c) * k) * t)


def log_likelihood(gamma: float, counts: np.ndarray, n: int, coverage: np.ndarray) -> float:
    """sum_i [c_i log q_i + (n - c_i) log(1 - q_i)], q_i = 1 - (1 - gamma)^K_i (nats)."""
    c, k = _flat(counts, coverage)
    return _loglik_t(_as_t(float(gamma)), c, int(n), k)


def _score(t: float, c: np.ndarray, n: int, k: np.ndarray) -> float:
    """dl/dt = sum_i K_i [c_i / expm1(K_i t) - (n - c_i)] (strictly decreasing in t)."""
    return float(np.sum(k * c / np.expm1(k * t)) - np.sum(k * (n - c)))


def _information(t: float, c: np.ndarray, k: np.ndarray) -> float:
    """-d2l/dt2 = sum_i c_i K_i^2 / (expm1(K_i t) (1 - exp(-K_i t)))."""
    return float(np.sum(c * k * k / (np.expm1(k * t) * -np.expm1(-k * t))))


def _bracket_up(f, start: float) -> float:
    """Smallest start * 2^j (j <= 1100) with f <= 0 (f decreasing); inf if none."""
    hi = start
    for _ in range(1100):
        if f(hi) <= 0:
            return hi
        hi *= 2.0
    return math.inf


def _bracket_down(f, start: float) -> float:
    """Largest start / 2^j (j <= 1000) with f < 0 (f decreasing towards 0+)."""
    lo = start
    for _ in range(1000):
        if f(lo) < 0:
            return lo
        lo /= 2.0
    return lo


def _mle_t(c: np.ndarray, n: int, k: np.ndarray) -> float:
    if not np.any(c > 0):
        return 0.0
    if np.all(c >= n):
        return math.inf
    score = lambda t: _score(t, c, n, k)  # noqa: E731
    lo = _bracket_down(lambda t: -score(t), 1e-12 / float(k.max()))
    hi = _bracket_up(score, lo * 2)
    return float(brentq(score, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


# ------------------------------------------------------------------------------ sandwich

def pair_coverage_counts(block_size: int, dims: Sequence[int], scheme: str) -> np.ndarray:
    """(P, P) integer matrix: admissible seeds whose block covers BOTH positions i and j
    (row-major positions; the diagonal is the coverage count). Kronecker product of the
    per-axis overlaps of the seed windows."""
    out = np.ones((1, 1), np.int64)
    for k, d in zip(theory.clipped_sizes(block_size, dims), dims):
        lo, hi = theory.seed_window(k, d, scheme)
        overlap = np.minimum(hi[:, None], hi[None, :]) - np.maximum(lo[:, None], lo[None, :]) + 1
        out = np.kron(out, np.maximum(overlap, 0))
    return out


def _weights(t: float, k: np.ndarray) -> np.ndarray:
    """Per-unit score = w . d_u - sum K: w_i = K_i / (1 - exp(-K_i t))."""
    return k / -np.expm1(-k * t)


def _score_variance_empirical(t: float, n: int, k: np.ndarray, unit_rows: np.ndarray) -> float:
    """Var of the total score over n units: n x the sample variance of the per-unit scores
    w . d_u over ``unit_rows`` (m, P), a sample of the units' dropped maps."""
    rows = np.asarray(unit_rows).reshape(-1, k.size)
    if rows.shape[0] < 2:
        return math.nan
    return float(n * np.var(rows.astype(np.float64) @ _weights(t, k), ddof=1))


def _score_variance_model(t: float, n: int, k: np.ndarray, pair_k: np.ndarray) -> float:
    """Var of the total score implied by the model at t: Cov(d_i, d_j) = P(both kept) -
    P(i kept) P(j kept) = exp(-t (K_i + K_j - K_ij)) - exp(-t (K_i + K_j))."""
    w = _weights(t, k)
    both = k[:, None] + k[None, :]
    cov = np.exp(-t * (both - pair_k)) - np.exp(-t * both)
    return float(n * (w @ cov @ w))


def fit_scheme(counts: np.ndarray, n: int, coverage: np.ndarray, level: float, scheme: str = "",
               unit_rows: Optional[np.ndarray] = None, pair_coverage: Optional[np.ndarray] = None) -> SchemeFit:
    """Maximum-likelihood gamma for one seed scheme (``coverage`` = its K_i), with the
    sandwich-adjusted likelihood-ratio interval at ``level``. ``unit_rows`` (a sample of the
    units' dropped maps, (m, P)) gives the empirical score variance; else ``pair_coverage``
    gives the model's; with neither, positions are taken as independent (interval too narrow
    by the overlap factor)."""
    c, k = _flat(counts, coverage)
    n = int(n)
    if n <= 0:
        return SchemeFit(scheme, math.nan, (0.0, 1.0), level, 0.0, 1.0)
    t_hat = _mle_t(c, n, k)
    l_hat = _loglik_t(t_hat, c, n, k)
    dispersion = 1.0
    if 0.0 < t_hat < math.inf:
        h = _information(t_hat, c, k)
        if unit_rows is not None and np.shape(unit_rows)[0] >= 2:
            j = _score_variance_empirical(t_hat, n, k, unit_rows)
        elif pair_coverage is not None:
            j = _score_variance_model(t_hat, n, k, np.asarray(pair_coverage, np.float64))
        else:
            j = h
        dispersion = j / h if h > 0 and j > 0 else 1.0  # j = 0 or nan: no spread to measure
    crit = float(chi2.isf(1.0 - level, 1)) * dispersion
    drop = lambda t: 2.0 * (l_hat - _loglik_t(t, c, n, k)) - crit  # noqa: E731 - convex in t, 0 at the ends
    low = 0.0
    if t_hat > 0:  # l -> -inf as t -> 0+ (some c_i > 0): drop changes sign below t_hat
        hi = t_hat if math.isfinite(t_hat) else _bracket_up(drop, 1e-12)
        lo = _bracket_down(lambda t: -drop(t), hi)
        low = brentq(drop, lo, hi, xtol=1e-300, rtol=1e-12) if drop(lo) > 0 else 0.0
    high = math.inf
    if math.isfinite(t_hat):
        start = max(t_hat, 1e-12 / float(k.max()))
        up = _bracket_up(lambda t: -drop(t), start * 2)
        high = brentq(drop, start, up, xtol=1e-300, rtol=1e-12) if math.isfinite(up) else math.inf
    return SchemeFit(scheme, _as_g(t_hat), (_as_g(low), _as_g(high)), float(level), l_hat, float(dispersion))


# ------------------------------------------------------------------------------ identification

def rule_gammas(p: float, block_size: int, dims: Sequence[int], scheme: str) -> Dict[str, float]:
    """The gamma each known rule gives for (p, block_size, dims) under ``scheme``."""
    return {r: theory.effective_gamma(p, block_size, dims, scheme, r) for r in RULES}


def match_rules(gamma: float, ci: Tuple[float, float], candidates: Mapping[str, float]
                ) -> Tuple[Tuple[str, ...], str, float]:
    """(rules whose gamma lies in ``ci``, the nearest rule in relative terms, fitted / its gamma - 1)."""
    matched = tuple(r for r, g in candidates.items() if ci[0] <= g <= ci[1])
    rel = {r: (gamma / g - 1.0) if g > 0 else math.inf for r, g in candidates.items()}
    nearest = min(rel, key=lambda r: abs(rel[r]))
    return matched, nearest, float(rel[nearest])


def identify(counts: np.ndarray, n: int, p: float, block_size: int, dims: Sequence[int], level: float,
             unit_rows: Optional[np.ndarray] = None, declared_scheme: Optional[str] = None,
             channels_shared: Optional[bool] = None) -> Identification:
    """Fit gamma under each seed scheme, pick the scheme with the larger maximised
    log-likelihood (ties, i.e. identical maps, go to ``declared_scheme``), and match the fitted
    gamma to the known rules (paper, uncorrected p/bs^r, exact). ``counts`` has shape ``dims``;
    ``unit_rows`` a sample of the units' dropped maps (m, prod(dims)) for the sandwich, else the
    model's pair probabilities are used."""
    dims = tuple(int(d) for d in dims)
    counts = np.asarray(counts).reshape(dims)
    fits = {}
    for s in SCHEMES:
        cov = theory.coverage_counts(block_size, dims, s)
        sample = unit_rows is not None and np.shape(unit_rows)[0] >= 2
        pair = None if sample else pair_coverage_counts(block_size, dims, s)
        fits[s] = fit_scheme(counts, n, cov, level, s, unit_rows, pair)
    same = all(np.array_equal(theory.coverage_counts(block_size, dims, SCHEMES[0]),
                              theory.coverage_counts(block_size, dims, s)) for s in SCHEMES[1:])
    best = max(SCHEMES, key=lambda s: fits[s].loglik)
    if same and declared_scheme in fits:
        best = declared_scheme
    other = [s for s in SCHEMES if s != best]
    llr = float(fits[best].loglik - max(fits[s].loglik for s in other)) if other else 0.0
    candidates = rule_gammas(p, block_size, dims, best)
    fit = fits[best]
    matched, nearest, gap = match_rules(fit.gamma, fit.ci, candidates)
    return Identification(fits, best, llr, not same, candidates, matched, nearest, gap, int(n), channels_shared)


def channels_shared(dropped: np.ndarray) -> Optional[bool]:
    """Exact: True when every channel's dropped map equals channel 0's in every unit of
    ``dropped`` (N, C, *spatial); None when C < 2 (nothing to compare)."""
    d = np.asarray(dropped, bool)
    if d.ndim < 2 or d.shape[1] < 2:
        return None
    return bool(np.all(d == d[:, :1]))


# ------------------------------------------------------------------------------ words

def describe(details: Mapping[str, Any]) -> Optional[str]:
    """One line, in words, saying where the measured layer departs from its contract, from the
    details of a DropBlock map / gamma result (see :meth:`Identification.as_details` plus
    ``declared_scheme``, ``declared_gamma_rule``, ``declared_share_channels``, ``rank``); None
    when the fit agrees with the contract (or there is no fit)."""
    scheme = details.get("identified_scheme")
    if scheme is None or details.get("fitted_gamma") is None:
        return None
    rank = int(details.get("rank", 2))
    parts = []
    declared = details.get("declared_scheme")
    if declared and scheme != declared and details.get("schemes_distinguishable", True):
        parts.append(SCHEME_WORDS.get(scheme, scheme))
    rule = details.get("declared_gamma_rule")
    matched = list(details.get("matched_gamma_rules") or [])
    g = float(details["fitted_gamma"])
    if parts or (rule and rule not in matched):
        if matched:
            parts.append(f"gamma {g:.4f} = " + " = ".join(rule_words(r, rank) for r in matched))
        else:
            near = details.get("nearest_gamma_rule")
            gap = float(details.get("gamma_relative_gap", math.nan))
            parts.append(f"gamma {g:.4f}, no known rule (nearest {rule_words(near, rank)}, {100 * gap:+.0f}%)"
                         if near else f"gamma {g:.4f}")
    shared, want = details.get("channels_shared"), details.get("declared_share_channels")
    if shared is not None and want is not None and bool(shared) != bool(want):
        parts.append("one mask shared by all channels (contract: one per channel)" if shared
                     else "one mask per channel (contract: one shared by all channels)")
    return "; ".join(parts) or None
