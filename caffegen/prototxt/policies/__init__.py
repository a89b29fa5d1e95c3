"""Caffe's seven lr policies as plug-ins: one module each, one registry.

* :mod:`.base`       :class:`Policy` (fields, defaults, the lr at an iteration and over a run, the help line),
  the float32 rounding Caffe's math does;
* :mod:`.fixed`, :mod:`.step`, :mod:`.exp`, :mod:`.inv`, :mod:`.multistep`, :mod:`.poly`, :mod:`.sigmoid`:
  one policy each.

:data:`REGISTRY` maps a name to its policy, in Caffe's order; :mod:`caffegen.prototxt.schedule` (the names, the
defaults, the lr math, the help) reads it and switches on no name. A fork's extra policy is one more module and
its line in the registration below (the names are read once, when :mod:`~caffegen.prototxt.schedule` is imported).
"""
from __future__ import annotations

from .base import Params, Policy
from .exp import Exp
from .fixed import Fixed
from .inv import Inv
from .multistep import Multistep
from .poly import Poly
from .sigmoid import Sigmoid
from .step import Step

__all__ = ["REGISTRY", "register", "Policy", "Params"]

REGISTRY: dict[str, Policy] = {}


def register(policy: Policy) -> Policy:
    """Make ``policy`` known to every caller (the CLI's choices, the spec's typing, the lr math)."""
    REGISTRY[policy.name] = policy
    return policy


for _policy in (Fixed(), Step(), Exp(), Inv(), Multistep(), Poly(), Sigmoid()):
    register(_policy)
