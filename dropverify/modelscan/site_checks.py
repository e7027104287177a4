"""Exact checks on the calls a scan recorded at each site, shared by the torch, Keras and NNX scans
(no sampling; each returns a :class:`~dropverify.checks.CheckResult`, ``statistical=False``):

* :func:`eval_verdict` — two eval-mode calls under different RNG seeds give identical outputs; a
  FAIL names the sites that dropped in eval.
* :func:`site_training` — in training the site receives the rate its module is configured
  with and is active (p > 0 and a training flag that lets it drop). For a functional call the
  configured rate is the first rate attribute found; a nonzero rate equal to another rate
  attribute of the same module counts as that one's.
* :func:`site_eval` — in eval the site applies nothing: a functional call passes p = 0 or
  training=False; a module site's output equals its contract's eval output on the real
  activations.
* :func:`site_round_trip` — train -> eval -> train leaves every call's p and activity as before.
* :func:`series` — no dropout takes, unchanged, the output of another applied dropout of its
  group (or its own): two in series are one dropout at p = 1 - (1 - p1)(1 - p2).

Importing this module imports no framework.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from ..results import ERROR, FAIL, PASS, CheckResult
from .sites import Call, Site, shown

EVAL_DETERMINISTIC = "eval_output_deterministic"
SITE_TRAINING = "site_receives_configured_p_in_training"
SITE_EVAL = "site_inactive_in_eval"
SITE_ROUND_TRIP = "site_p_restored_after_eval"
SERIES = "no_dropout_applied_twice_in_series"

P_TOL = 1e-6
"""Relative tolerance between a configured and a received rate (a float32 round trip of p)."""


def _result(check: str, target: str, variant: str, ok: bool, message: str, **details: Any) -> CheckResult:
    return CheckResult(check=check, target=target, variant=variant, verdict=PASS if ok else FAIL,
                       text=message, details=details)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= P_TOL * max(abs(a), abs(b), 1e-12) or a == b


def _p_name(site: Site) -> str:
    return site.fop.p_arg if site.fop is not None else "p"


def _flag_words(site: Site, call: Call) -> str:
    """``F.dropout(p=0.1) called with training=True (F.dropout's default)``: the op's default is
    named when the flag has the default's value (a forgotten ``training=self.training`` looks
    like this; a functional op receives every argument by name, so whether it was passed is
    not observable)."""
    op = site.fop
    if op is None or op.flag_arg is None:
        return f"{site.kind}({_p_name(site)}={call.p:g})"
    default = op.defaults.get(op.flag_arg, None)
    how = f" ({op.shown}'s default; pass {op.flag_arg}=self.training)" if default is call.flag else ""
    return f"{op.shown}({op.p_arg}={call.p:g}) called with {op.flag_arg}={call.flag}{how}"


def eval_verdict(a: Sequence[Any], b: Sequence[Any], sites: Sequence[Site], target: str,
                 eval_active: Sequence[str] = ()) -> CheckResult:
    """Two eval calls' outputs (under different seeds), as numpy arrays in the same order: identical, or
    a FAIL naming the sites that dropped in eval. Outputs that differ PASS when every site that dropped in
    eval is declared eval-active (MC dropout) and at least one did. NaN equals NaN."""
    if len(a) != len(b) or any(np.shape(x) != np.shape(y) for x, y in zip(a, b)):
        return _result(EVAL_DETERMINISTIC, target, "model", False,
                       "eval output changes structure between two calls")
    off = total = 0
    worst = 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        floating = np.issubdtype(x.dtype, np.floating) or x.dtype.kind == "V" or str(x.dtype) == "bfloat16"
        if floating:
            x, y = x.astype(np.float64), y.astype(np.float64)
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            same = x == y
        off += int((~same).sum())
        total += int(x.size)
        if floating and bool((~same).any()):
            worst = max(worst, float(np.nan_to_num(np.abs(x - y), nan=0.0).max()))
    active = [s for s in sites if any(c.applied for c in s.phase("eval"))]
    declared = [s for s in active if _declared(s, eval_active)]
    if off and active and len(declared) == len(active):
        return _result(EVAL_DETERMINISTIC, target, "model", True,
                       f"eval output differs between two calls under different seeds ({off} of {total} elements), "
                       f"as declared: only eval-active (MC dropout) sites dropped in eval ("
                       + ", ".join(s.label for s in declared[:3]) + (" ..." if len(declared) > 3 else "") + ")",
                       elements_differing=off, elements=total, sites_active_in_eval=[s.label for s in active])
    active = [s for s in active if not _declared(s, eval_active)]
    if off == 0:
        return _result(EVAL_DETERMINISTIC, target, "model", True,
                       f"two eval calls under different seeds give identical outputs ({total} elements)",
                       elements=total)
    named = ", ".join(f"{s.label} ({_active_words(s)})" for s in active[:3])
    named += f" and {len(active) - 3} more site(s)" if len(active) > 3 else ""
    where = ("; dropout applied in eval at " + named
             if active else "; no intercepted dropout site was active in eval: the randomness comes from "
                            "another op (a module classified as none, or a random op outside the dropout family)")
    return _result(EVAL_DETERMINISTIC, target, "model", False,
                   f"eval output differs between two calls under different seeds: {off} of {total} elements, "
                   f"max |diff| {worst:.3g}{where}", elements_differing=off, elements=total,
                   sites_active_in_eval=[s.label for s in active])


def eval_active_match(site: Site, patterns: Sequence[str]) -> bool:
    """Whether a site is declared eval-active: a pattern (fnmatch) matches its label, its path or its
    unique name."""
    return any(fnmatch.fnmatchcase(n, pat) for pat in patterns for n in {site.label, site.path, site.name})


def _declared(site: Site, eval_active: Sequence[str]) -> bool:
    return bool(eval_active) and eval_active_match(site, eval_active)


def outside_words(site: Site, call: Call) -> str:
    """Why a dropout module the model does not register drops in eval, and the fix that fits."""
    module = call.extra.get("module", site.kind)
    if site.outside and site.outside != "forward":
        return (f"{module} kept in a plain Python {site.outside} is not a registered submodule, so model.eval() "
                f"does not reach it and it stays in training mode: use nn.ModuleList (or nn.ModuleDict)")
    return (f"{module} built inside forward() is a new module on every call, in training mode whatever the model's "
            f"mode: build it in __init__ (or call F.dropout(x, p, training=self.training))")


def _active_words(site: Site) -> str:
    call = next(c for c in site.phase("eval") if c.applied)
    if site.outside:
        return outside_words(site, call)
    if site.op == "scaled_dot_product_attention":
        return f"scaled_dot_product_attention dropout_p={call.p:g}"
    if site.fop is not None:
        return _flag_words(site, call)
    return f"{site.kind} p={call.p:g} in training mode"


# ------------------------------------------------------------------------------ sites


def site_training(site: Site, target: str, variant: str) -> CheckResult:
    """The rate received in training equals the configured one, and the site is active."""
    calls = site.phase("train")
    pname = _p_name(site)
    received = sorted({c.p for c in calls})
    got = ", ".join(f"{p:g}" for p in received)
    what = site.kind if site.is_module else site.fop.shown if site.fop else site.kind
    inactive = [c for c in calls if c.p > 0 and not c.applied]
    details = {"received": received, "configured": site.configured, "configured_from": site.configured_from,
               "calls": len(calls)}
    if not calls:
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} not called in training (only in eval)", **details)
    if inactive:
        c = inactive[0]
        if site.module_kind is not None and site.module_kind.rnn and c.module_training:
            layers = c.extra.get("num_layers", 1)
            return _result(SITE_TRAINING, target, variant, False,
                           f"{site.label}: {site.kind.split(' ')[0]}(num_layers={layers}, dropout={c.p:g}) never "
                           f"drops: torch applies an RNN's dropout only between stacked layers, so with one layer "
                           f"it is a no-op (torch warns); use num_layers >= 2, or an nn.Dropout on the output",
                           **details)
        if site.is_module and c.flag is None:
            why = f"{site.label}: {what}({pname}={c.p:g}) is in eval mode while the model trains: it never drops"
        elif site.is_module:
            why = (f"{site.label}: {what} calls {c.extra.get('via', 'its op')}({pname}={c.p:g}) with training="
                   f"{c.flag} in training: it never drops")
        else:
            why = f"{site.label}: {_flag_words(site, c)} in training: it never drops"
        return _result(SITE_TRAINING, target, variant, False, why, **details)
    if site.configured is None:
        looked = ", ".join(site.looked_for)
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} received {pname}={got} in training; no configured rate found on "
                       f"{shown(site.path)} or its parent to compare (looked for {looked})", **details)
    wrong = [p for p in received if not _same(p, site.configured)]
    # a module may keep several rates (attention and residual): a nonzero rate equal to another of its
    # rate attributes is that one's; a zero where the first one is nonzero stays the unplumbed-rate FAIL
    other = {p: next((w for v, w in site.alternatives if _same(p, v)), None) for p in wrong if p > 0}
    if wrong and all(other.get(p) for p in wrong):
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} received {pname}={got} in training, as configured ("
                       + ", ".join(other[p] for p in wrong) + f"; the first rate attribute, {site.configured_from}, "
                       f"is {site.configured:g})", **details)
    if wrong:
        return _result(SITE_TRAINING, target, variant, False,
                       f"{site.label}: {what} received {pname}={wrong[0]:g} in training, but "
                       f"{site.configured:g} is configured ({site.configured_from}): the configured rate is not "
                       f"plumbed into the call", **details)
    return _result(SITE_TRAINING, target, variant, True,
                   f"{site.label}: {what} received {pname}={got} in training, as configured ({site.configured_from})",
                   **details)


def site_eval(site: Site, target: str, variant: str, eval_active: bool = False) -> CheckResult:
    """Nothing dropped in eval: by the arguments passed, and for module sites by the output. A site
    declared eval-active (MC dropout) must instead drop in every eval call at its training rate."""
    calls = site.phase("eval")
    pname = _p_name(site)
    if not calls:
        return _result(SITE_EVAL, target, variant, True, f"{site.label}: not called in eval", calls=0)
    bad = [c for c in calls if c.applied]
    if eval_active:
        rates = sorted({c.p for c in site.phase("train")})
        drops = lambda c: c.applied or bool(c.eval_off and c.eval_off[0] > 0)  # noqa: E731
        off = [c for c in calls if not drops(c) or not any(_same(c.p, r) for r in rates)]
        if off:
            c = off[0]
            how = "does not drop" if not drops(c) else f"drops at {pname}={c.p:g}, not its training rate"
            return _result(SITE_EVAL, target, variant, False,
                           f"{site.label}: declared eval-active (MC dropout), but {how} in {len(off)} of "
                           f"{len(calls)} eval call(s)", calls=len(calls), active=len(bad))
        return _result(SITE_EVAL, target, variant, True,
                       f"{site.label}: declared eval-active (MC dropout): drops in all {len(calls)} eval call(s) at "
                       f"{pname}=" + ", ".join(f"{c:g}" for c in sorted({c.p for c in calls})) + ", its training "
                       "rate", calls=len(calls), active=len(bad))
    if bad:
        c = bad[0]
        if site.outside:
            why = f"{site.label}: {outside_words(site, c)}; it drops in eval"
        elif site.op == "scaled_dot_product_attention":
            why = f"{site.label}: dropout_p={c.p:g} passed to scaled_dot_product_attention in eval"
        elif not site.is_module:
            why = f"{site.label}: {_flag_words(site, c)} in eval"
        elif c.flag is not None:
            why = (f"{site.label}: {site.kind} calls {c.extra.get('via', 'its op')}({pname}={c.p:g}) with training="
                   f"{c.flag} in eval")
        else:
            rnn = site.module_kind is not None and site.module_kind.rnn
            kind = site.kind.split(" (")[0] if rnn else site.kind
            why = (f"{site.label}: {kind}({'dropout' if rnn else pname}={c.p:g}) is in training mode while the model "
                   f"is in eval" + (": it drops between its layers" if rnn else ""))
        return _result(SITE_EVAL, target, variant, False, why + f" ({len(bad)} of {len(calls)} eval calls)",
                       calls=len(calls), active=len(bad))
    off = [c.eval_off for c in calls if c.eval_off is not None and c.eval_off[0] > 0]
    if off:
        n, total = off[0]
        return _result(SITE_EVAL, target, variant, False,
                       f"{site.label}: {site.kind} output differs from its eval output (the input) in eval: "
                       f"{n} of {total} elements on the real activations", calls=len(calls), elements_off=n)
    how = ("in eval mode: torch drops between an RNN's layers in training only" if site.module_kind is not None
           and site.module_kind.rnn else "output equal to its eval output on the real activations" if site.is_module
           else f"{pname}=0 passed" if site.fop is None or site.fop.flag_arg is None
           else f"{site.fop.flag_arg}=False or {pname}=0 passed")
    return _result(SITE_EVAL, target, variant, True, f"{site.label}: inactive in {len(calls)} eval call(s) ({how})",
                   calls=len(calls))


def site_round_trip(site: Site, target: str, variant: str) -> CheckResult:
    """train -> eval -> train: every call's p and activity as before the eval pass."""
    before, after = site.phase("train"), site.phase("train_after_eval")
    pname = _p_name(site)
    if len(before) != len(after):
        return _result(SITE_ROUND_TRIP, target, variant, False,
                       f"{site.label}: called {len(before)} time(s) in training before an eval pass, {len(after)} "
                       f"after it (train -> eval -> train)", before=len(before), after=len(after))
    for a, b in zip(before, after):
        if not _same(a.p, b.p):
            return _result(SITE_ROUND_TRIP, target, variant, False,
                           f"{site.label}: {pname}={a.p:g} in training before an eval pass, {b.p:g} after it "
                           f"(train -> eval -> train): the rate is not restored", before=a.p, after=b.p)
        if a.applied != b.applied:
            return _result(SITE_ROUND_TRIP, target, variant, False,
                           f"{site.label}: {'drops' if a.applied else 'does not drop'} in training before an eval "
                           f"pass, {'drops' if b.applied else 'does not drop'} after it (train -> eval -> train)",
                           before=a.applied, after=b.applied)
    ps = ", ".join(f"{p:g}" for p in sorted({c.p for c in before})) or "none"
    return _result(SITE_ROUND_TRIP, target, variant, True,
                   f"{site.label}: {pname}={ps} in training before and after an eval pass ({len(before)} call(s))")


def series(sites: Sequence[Site], target: str) -> CheckResult:
    """No applied dropout call in training takes, unchanged (the same tensor, no in-place op since),
    the output of another applied dropout of the same kind: two in series are one dropout at
    p = 1 - (1 - p1)(1 - p2), named with that effective rate (one module applied twice included)."""
    pairs: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for s in sites:
        for c in s.phase("train"):
            if "after" in c.extra:
                first, p1 = c.extra["after"]
                pairs.setdefault((first, s.label), (p1, c.p))
    if not pairs:
        checked = sum(1 for s in sites for c in s.phase("train") if c.applied)
        return _result(SERIES, target, "model", True,
                       f"no dropout's input is the unchanged output of another dropout of its kind ({checked} "
                       f"applied training call(s))", pairs=[])
    words = []
    for (first, second), (p1, p2) in pairs.items():
        eff = 1 - (1 - p1) * (1 - p2)
        what = (f"{second} is applied twice to the same tensor" if first == second else
                f"{second} is applied to the output of {first} with nothing between")
        words.append(f"{what}: p {p1:g} then {p2:g} is one dropout at effective p = 1 - (1 - {p1:g})(1 - {p2:g}) "
                     f"= {eff:.4g}")
    return _result(SERIES, target, "model", False, "; ".join(words),
                   pairs=[{"first": a, "second": b, "p": list(v), "effective_p": 1 - (1 - v[0]) * (1 - v[1])}
                          for (a, b), v in pairs.items()])


def error_result(check: str, target: str, variant: str, exc: BaseException, when: str) -> CheckResult:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return CheckResult(check=check, target=target, variant=variant, verdict=ERROR,
                       text=f"the model raised {type(exc).__name__}{': ' + text if text else ''} {when}")


__all__ = ["EVAL_DETERMINISTIC", "P_TOL", "SERIES", "SITE_EVAL", "SITE_ROUND_TRIP", "SITE_TRAINING", "error_result",
           "eval_active_match", "eval_verdict", "outside_words", "series", "site_eval", "site_round_trip",
           "site_training"]
