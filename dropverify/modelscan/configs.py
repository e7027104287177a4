"""Configured rates from the model's own config, and rates the user declares, matched per site kind.

Promises:

* :func:`read_config` reads the dropout fields of a model's config before it runs: ``model.config``
  (a Hugging Face ``PretrainedConfig``, a dict, a dataclass or any object with attributes; else
  the first submodule's ``.config``), ``model.cfg`` / ``model.args`` / ``model.hparams``, and the
  root module's own number attributes (timm keeps ``drop_rate``; torchvision's ViT ``dropout`` /
  ``attention_dropout``). A field counts when its name says dropout (``*dropout*``, ``*_pdrop``,
  ``drop_rate``, ``drop_path_rate``, ``drop_block_rate``, ``stochastic_depth_prob``, ``keep_prob`` ...)
  and its value is a number in [0, 1]; ``layerdrop`` fields are not a site's rate and are left out.
  A ``*keep_prob`` field means the rate ``1 - value``.
* Every field has a kind from its name (:func:`field_kind`): ``attention`` (``attention_*``,
  ``attn_*``), ``drop_path`` (``drop_path_rate``, ``stochastic_depth_prob``), ``drop_block`` or
  ``hidden`` (every other dropout on activations: hidden, residual, embedding, classifier). Every
  site has a kind (:func:`site_kind`): SDPA / multi-head attention calls, and a dropout on a
  rank-4 input (attention weights, N x heads x queries x keys) made inside a module whose path
  says ``att``, are ``attention``; DropPath / StochasticDepth ``drop_path``; DropBlock ``drop_block``;
  every other site ``hidden``.
* :func:`config_result` (exact, no sampling): a site active in training whose rate equals no field
  of its own kind but equals a field of another kind, or the raw value of a ``keep_prob`` field,
  FAILs naming both fields. A site whose kind has no field in the config, or whose rate equals no
  field at all, is not judged here (its module's own rate is :func:`~.model_checks.site_training`'s).
  A ``drop_path`` site's own fields accept any rate up to the field (a depth schedule).
* :func:`expect_result`: each ``pattern=rate`` the user declares (fnmatch of a site's label, path or
  name) FAILs where a matched site's effective training rate differs; a pattern that matches no site
  is an InvalidArgument (exit 2 from the command line), raised by :func:`check_expect` before sampling.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..checks import CheckResult
from ..errors import InvalidArgument
from .site_checks import P_TOL, _result, _same
from .sites import Site

CONFIG_CHECK = "site_rate_matches_config_field"
EXPECT_CHECK = "site_rate_matches_expected"

_RATE_NAME = re.compile(r"(dropout|pdrop|drop_rate|drop_prob|keep_prob|stochastic_depth_prob|drop_path|drop_block|"
                        r"^drop$|_drop$)")
_CONFIG_ATTRS = ("config", "cfg", "args", "hparams")


@dataclasses.dataclass(frozen=True)
class Field:
    """One dropout field of a config: its name, where it was read, the rate it means and its kind."""

    name: str          # "attention_probs_dropout_prob"
    where: str         # "config.attention_probs_dropout_prob"
    value: float       # as written (a keep probability for keep_prob fields)
    rate: float        # the drop rate it means: value, or 1 - value for keep_prob
    kind: str          # "attention", "hidden", "drop_path" or "drop_block"

    @property
    def keep(self) -> bool:
        return self.name.endswith("keep_prob")


def field_kind(name: str) -> str:
    """The site kind a config field configures, from its name."""
    n = name.lower()
    if "path" in n or "stochastic_depth" in n:
        return "drop_path"
    if "block" in n:
        return "drop_block"
    if n.startswith(("attention", "attn")) or "_attn" in n or "attention_" in n:
        return "attention"
    return "hidden"


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if 0.0 <= v <= 1.0 else None


def _items(obj: Any) -> List[Tuple[str, Any]]:
    """The top-level (name, value) pairs of a dict, a dataclass, a PretrainedConfig or an object."""
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj)]
    try:
        return [(k, v) for k, v in vars(obj).items() if not k.startswith("_")]
    except TypeError:
        return []


def _fields_of(obj: Any, prefix: str) -> List[Field]:
    out = []
    for name, raw in _items(obj):
        v = _number(raw)
        if v is None or "layerdrop" in name.lower() or not _RATE_NAME.search(name.lower()):
            continue
        rate = 1.0 - v if name.endswith("keep_prob") else v
        out.append(Field(name, f"{prefix}{name}", v, rate, field_kind(name)))
    return out


def read_config(model: Any) -> List[Field]:
    """Every dropout field of the model's config objects and of its root module, read before it runs
    (the first source naming a field wins)."""
    import torch.nn as nn
    sources: List[Tuple[Any, str]] = []
    for attr in _CONFIG_ATTRS:
        obj = getattr(model, attr, None)
        if obj is not None and not isinstance(obj, (nn.Module, str, int, float)):
            sources.append((obj, f"{attr}."))
    if not sources and isinstance(model, nn.Module):
        for path, sub in model.named_modules():
            obj = getattr(sub, "config", None)
            if path and obj is not None and not isinstance(obj, (nn.Module, str, int, float)):
                sources.append((obj, f"{path}.config."))
                break
    out: Dict[str, Field] = {}
    for obj, prefix in sources:
        for f in _fields_of(obj, prefix):
            out.setdefault(f.name, f)
    root = {k: v for k, v in vars(model).items() if not k.startswith("_")} if hasattr(model, "__dict__") else {}
    for f in _fields_of(root, "model."):
        out.setdefault(f.name, f)
    return list(out.values())


def site_kind(site: Site) -> str:
    """``attention``, ``drop_path``, ``drop_block`` or ``hidden`` (see the module docstring)."""
    kind = site.module_kind
    if kind is not None and not kind.rnn:
        variant = site.identified or kind.variant or ""
        if variant in ("drop_path", "stochastic_depth"):
            return "drop_path"
        if "dropblock" in variant or "DropBlock" in kind.name:
            return "drop_block"
    if site.op in ("scaled_dot_product_attention", "multi_head_attention_forward"):
        return "attention"
    calls = site.phase("train")
    shape = calls[0].shapes[0] if calls and calls[0].shapes else ()
    if len(shape) == 4 and "att" in site.path.lower():  # (N, heads, L_query, L_key), cross-attention too
        return "attention"
    return "hidden"


def _train_rates(site: Site) -> List[float]:
    """The effective rates of the site's training calls: p where applied, 0 where not."""
    return sorted({(c.p if c.applied else 0.0) for c in site.phase("train")})


def config_result(fields: Sequence[Field], sites: Sequence[Site], target: str) -> Optional[CheckResult]:
    """FAIL where an active site's training rate is another kind's field (or a keep_prob's raw value)
    and none of its own kind's; None when the config has no dropout field."""
    if not fields:
        return None
    shown = ", ".join(f"{f.where}={f.value:g}" + (f" (rate {f.rate:g})" if f.keep else "") for f in fields)
    wrong: List[str] = []
    rows: List[Dict[str, Any]] = []
    judged = 0
    for site in sites:
        kind = site_kind(site)
        own = [f for f in fields if f.kind == kind]
        for p in _train_rates(site):
            if p <= 0 or not own:
                continue
            judged += 1
            if any(_same(p, f.rate) or (kind == "drop_path" and p <= f.rate * (1 + P_TOL)) for f in own):
                continue
            keep = [f for f in fields if f.keep and _same(p, f.value)]
            other = keep or [f for f in fields if f.kind != kind and _same(p, f.rate)]
            if not other:
                continue
            mine = " / ".join(f"{f.where}={f.rate:g}" for f in own)
            if keep:
                why = (f"{keep[0].where}={keep[0].value:g} passed as p (a keep probability: the rate is "
                       f"1 - {keep[0].value:g} = {keep[0].rate:g})")
            else:
                why = f"the value of {other[0].where} ({other[0].kind} dropout)"
            wrong.append(f"{site.label}: {kind} dropout received p={p:g} in training, {why}; its own field "
                         f"{mine}")
            rows.append({"site": site.name, "kind": kind, "p": p, "own": [f.where for f in own],
                         "matches": [f.where for f in other]})
    details = {"fields": [dataclasses.asdict(f) for f in fields], "mismatches": rows}
    return _result(CONFIG_CHECK, target, "model", not wrong, "; ".join(wrong) if wrong else
                   f"no active site's rate is another kind's config field ({judged} rate(s) judged against {shown})",
                   **details)


def parse_expect(items: Any) -> Dict[str, float]:
    """``{pattern: rate}`` from a mapping or from ``"pattern=rate"`` strings; InvalidArgument otherwise."""
    if items is None:
        return {}
    pairs: List[Tuple[Any, Any]] = []
    if isinstance(items, Mapping):
        pairs = list(items.items())
    elif isinstance(items, (list, tuple)):
        for item in items:
            if not isinstance(item, str) or "=" not in item:
                raise InvalidArgument(f"expect {item!r}, but should be PATTERN=RATE (e.g. 'blocks.*.attn=0.1')")
            pat, _, rate = item.rpartition("=")
            pairs.append((pat.strip(), rate.strip()))
    else:
        raise InvalidArgument(f"expect={items!r}, but should be a dict {{pattern: rate}} or PATTERN=RATE strings")
    out: Dict[str, float] = {}
    for pat, rate in pairs:
        try:
            v = float(rate)
        except (TypeError, ValueError):
            v = float("nan")
        if not isinstance(pat, str) or not pat or not 0.0 <= v <= 1.0:
            raise InvalidArgument(f"expect {pat!r}={rate!r}, but should be a site pattern (fnmatch) and a rate "
                                  "in [0, 1]")
        out[pat] = v
    return out


def _matches(site: Site, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in {site.label, site.path, site.name})


def check_expect(expect: Mapping[str, float], sites: Sequence[Site]) -> None:
    """InvalidArgument when a declared pattern matches no site (naming some of the sites there are)."""
    for pat in expect:
        if not any(_matches(s, pat) for s in sites):
            names = ", ".join(s.label for s in sites[:6]) + (" ..." if len(sites) > 6 else "")
            raise InvalidArgument(f"expect {pat!r} matches no dropout site (the sites: {names})")


def expect_result(expect: Mapping[str, float], sites: Sequence[Site], target: str) -> Optional[CheckResult]:
    """FAIL where a site matching a declared pattern has another effective training rate."""
    if not expect:
        return None
    wrong: List[str] = []
    seen = 0
    for pat, rate in expect.items():
        for site in (s for s in sites if _matches(s, pat)):
            rates = _train_rates(site)
            if not rates:
                continue  # not called in training: NOT EXERCISED in the site table
            seen += 1
            bad = [p for p in rates if not (_same(p, rate) or p == rate)]
            if bad:
                wrong.append(f"{site.label}: p={', '.join(f'{p:g}' for p in bad)} in training, but {pat}={rate:g} "
                             "is expected")
    details = {"expect": dict(expect)}
    return _result(EXPECT_CHECK, target, "model", not wrong, "; ".join(wrong) if wrong else
                   f"every site matching {', '.join(f'{k}={v:g}' for k, v in expect.items())} has that rate in "
                   f"training ({seen} site(s))", **details)


__all__ = ["CONFIG_CHECK", "EXPECT_CHECK", "Field", "check_expect", "config_result", "expect_result",
           "field_kind", "parse_expect", "read_config", "site_kind"]
