"""Run-wide settings: :class:`Settings`, the margin names :data:`MARGIN_FIELDS`, :data:`DEFAULT_SEED`
and the budget profiles :data:`PROFILES` (quick / default / thorough), defined here once for the
command line (``--quick``, ``--thorough``, ``--profile NAME``), ``dropverify.verify(profile=...)``
and the pytest plugin (``--dropverify-profile``).

Promises: plain data and its validation, nothing else; it imports no check, target, runner
or numpy, so the runner, CLI, API, config and pytest plugin can read it without loading them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

from .errors import InvalidArgument, did_you_mean, out_of_range


MARGIN_FIELDS = {
    "rate": "rate_rel", "position": "position_rel", "mean": "mean_tol", "variance": "variance_tol",
    "dependence": "dependence_rr", "correlation": "correlation_tol", "gamma": "gamma_rel",
    "dispersion": "dispersion_rel",
}
"""CLI / Python names of the equivalence margins (``--margin rate=0.02``) -> Settings fields."""

DEFAULT_SEED = 20261126
"""The one default master seed: Settings, ``dropverify.verify()``, the CLI and the pytest plugin."""


@dataclass(frozen=True)
class Settings:
    """Run-wide settings.

    alpha: family-wise false-alarm rate of the whole run (Holm across its statistical
    results); power: detection probability that defines each minimum detectable deviation;
    max_calls: sampling budget of one statistical check in calls (or independent steps) of
    the target, and the most calls the configuration's shared stream draws; max_units: soft
    cap on mask units per check (never below the calls that ``fault_fraction`` requires);
    fault_fraction: a PASS needs enough independent calls that a
    fault striking at least this fraction of calls appears in one of them with probability
    >= 1 - alpha (a fault in fewer calls could hide; the report states the fraction).

    Equivalence margins (what a PASS certifies; stated, never widened — where the budget
    cannot certify one the verdict is INCONCLUSIVE with the margin it could certify):
    ``rate_rel`` x min(p, 1-p) on the drop rate; ``position_rel`` x min(q, 1-q) on every
    position's rate; ``mean_tol`` relative bias of the output; ``variance_tol`` relative;
    ``dependence_rr`` on the relative risk P(event | partner event) / P(event) - 1 of binary
    masks (the event is the rarer outcome, so it is meaningful for p near 0 and near 1);
    ``correlation_tol`` absolute, continuous noise; ``gamma_rel`` relative, DropBlock gamma;
    ``dispersion_rel`` on the ratio of the per-call dropped count's variance to the binomial's.
    time_budget_s: wall-clock budget of a configuration (None: none), planned across its checks
    (``dropverify.runner.BudgetPlan``: time shares for the shared stream and for each check with a
    stream of its own, every check's first look before the others take more); when a check's share
    ends it evaluates what it has, and no call starts after the budget, so a configuration ends
    within ``time_budget_s + call_timeout_s`` (results then depend on the machine's speed;
    ``max_calls`` bounds a run reproducibly). shared_stream: the
    statistical checks read one stream of calls per configuration (False: each draws its own
    copy of that stream from the same seed — same results, more calls; for comparison).
    call_timeout_s: a single call slower than this is an ERROR (a hung target); the configuration
    then calls its target no more (its later checks are ERRORs at once).
    """

    alpha: float = 1e-3
    power: float = 0.99
    max_calls: int = 20000
    max_units: int = 8_000_000
    min_units_per_sample: int = 2000
    rate_rel: float = 0.05
    position_rel: float = 0.25
    mean_tol: float = 0.01
    variance_tol: float = 0.05
    dependence_rr: float = 0.2
    correlation_tol: float = 0.05
    gamma_rel: float = 0.1
    dispersion_rel: float = 0.5
    fault_fraction: float = 0.05
    call_timeout_s: float = 60.0
    seed: int = DEFAULT_SEED
    time_budget_s: Optional[float] = None
    shared_stream: bool = True

    def validate(self) -> "Settings":
        import numpy as np  # here, not at import: the CLI and the pytest plugin read this module light
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise out_of_range("seed", self.seed, "an integer >= 0")
        if not 0 < self.alpha < 1:
            raise out_of_range("alpha", self.alpha, "in (0, 1)")
        if not 0 < self.power < 1:
            raise out_of_range("power", self.power, "in (0, 1)")
        if self.max_calls < 4:
            raise out_of_range("max_calls", self.max_calls, ">= 4")
        if self.time_budget_s is not None and not 0 < self.time_budget_s < math.inf:
            raise out_of_range("time_budget_s", self.time_budget_s, "a positive number of seconds")
        if not 0 < self.fault_fraction < 1:
            raise out_of_range("fault_fraction", self.fault_fraction, "in (0, 1)")
        for name, fld in MARGIN_FIELDS.items():
            v = getattr(self, fld)
            if not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise out_of_range(f"margin {name}", v, "a positive number")
        return self

    def with_margins(self, **margins: float) -> "Settings":
        """A copy with margins set by their short names (rate, position, mean, variance,
        dependence, correlation, gamma); an unknown name raises InvalidArgument."""
        kw = {}
        for name, value in margins.items():
            if name not in MARGIN_FIELDS:
                raise InvalidArgument(f"margin {name!r} unknown; known: {', '.join(MARGIN_FIELDS)}")
            kw[MARGIN_FIELDS[name]] = float(value)
        return replace(self, **kw).validate()


LONG_HORIZON_CALLS = 4096
"""Calls the long-horizon checks read at most (``dropverify.checks.longhorizon.HORIZON``; a test
keeps the two equal); a run sees ``min(LONG_HORIZON_CALLS, max_calls)`` of them."""


@dataclass(frozen=True)
class Profile:
    """A budget preset, the same in the CLI, the Python API and the pytest plugin.

    Every field changes results, so every one is a :class:`Settings` value (``checks`` aside:
    None runs every check); a reproduction line writes the settings out in full, so it repeats
    a run whatever profile made it. A profile is defined by calls, never by seconds alone
    (``time_budget_s`` None): a time budget on a loaded machine leaves checks without samples
    and makes results depend on the machine's speed."""

    name: str
    max_calls: int
    power: float
    alpha: float
    time_budget_s: Optional[float]
    checks: Optional[Tuple[str, ...]]
    doc: str

    @property
    def long_horizon_calls(self) -> int:
        """Calls the long-horizon checks read under this profile."""
        return min(LONG_HORIZON_CALLS, self.max_calls)

    def values(self) -> Dict[str, Any]:
        """The :class:`Settings` fields this profile sets."""
        return {"max_calls": self.max_calls, "power": self.power, "alpha": self.alpha,
                "time_budget_s": self.time_budget_s}

    def settings(self, **overrides: Any) -> Settings:
        """``Settings`` of this profile, ``overrides`` (field names) on top; validated."""
        return Settings(**{**self.values(), **overrides}).validate()

    def describe(self) -> str:
        """One line: what the profile sets."""
        budget = "no time budget" if self.time_budget_s is None else f"time budget {self.time_budget_s:g} s"
        return (f"{self.name}: max_calls {self.max_calls} (long-horizon checks {self.long_horizon_calls}), power "
                f"{self.power:g}, alpha {self.alpha:g}, {budget}, "
                f"{'every check' if self.checks is None else ', '.join(self.checks)}")


PROFILES: Dict[str, Profile] = {p.name: p for p in (
    Profile("quick", max_calls=1000, power=0.9, alpha=1e-3, time_budget_s=None, checks=None,
            doc="every commit: 1000 calls per check at power 0.9 (a check that cannot certify in that budget "
                "is INCONCLUSIVE, which fails only --strict runs)"),
    Profile("default", max_calls=Settings.max_calls, power=Settings.power, alpha=Settings.alpha,
            time_budget_s=Settings.time_budget_s, checks=None,
            doc="Settings() as it stands: 20000 calls per check at power 0.99"),
    Profile("thorough", max_calls=100000, power=0.999, alpha=1e-4, time_budget_s=None, checks=None,
            doc="nightly: 5x the calls, power 0.999, a 10x smaller family-wise false-alarm rate"),
)}
"""The budget profiles by name (see :class:`Profile`); ``default`` is ``Settings()``."""

DEFAULT_PROFILE = "default"


def get_profile(name: str) -> Profile:
    """The profile called ``name``; InvalidArgument (one line, the closest names) otherwise."""
    if name not in PROFILES:
        raise InvalidArgument(f"profile={name!r}, but should be one of {', '.join(PROFILES)}"
                              f"{did_you_mean(str(name), PROFILES)}")
    return PROFILES[name]
