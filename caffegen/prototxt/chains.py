"""Schedules Caffe 1.0 lacks, built from its own policies: a run becomes a chain of segments, each a real
``caffe train`` resumed from the previous one's snapshot (the iteration and the momentum history carry over), each
with Caffe's own exact lr math on the absolute iteration. Pure: the pieces, their lr, the ideal curve.

* ``linear`` (to ``min_lr`` at max_iter), ``onecycle`` (Smith 2018: up to ``max_lr``, back down, a final
  annihilation), ``triangular`` (Smith 2017: cyclic between base_lr and ``max_lr``, half-cycle ``stepsize``) and a
  warm-up are straight lines: ``inv`` with power -1 is ``base_lr * (1 + gamma * iter)``, a line through any two
  points, so they are exact.
* ``cosine`` (to ``min_lr``) and ``sgdr`` (cosine with warm restarts: first ``period``, then ``period_mult`` times
  longer) are smooth: a polyline of such lines, its knots placed greedily so that no iteration is further than
  ``tolerance`` (1% of base_lr by default) from the cosine.
* ``<policy>+warmup``: any schedule after a linear warm-up from ``warmup_start`` x its value over ``warmup_iter``.
* ``plateau`` is not planned ahead: the driver drops the lr by ``gamma`` when the test metric has not improved for
  ``patience`` test passes (:func:`plateau_next`).

Each schedule is a plug-in of :mod:`caffegen.prototxt.chained` (one module each, a registry); this module is what
every caller uses, and it switches on no schedule's name.

A knot that falls on a test pass, where the schedule is continuous, is moved one iteration on (the two lines agree
there): Caffe tests at the end of a segment and again at the start of the next when the boundary is a multiple of
test_interval, and a moved knot saves that pass.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .chained import REGISTRY
from .chained.cosine import TOLERANCE
from .chained.pieces import Piece, line, piece_lr
from .chained.plateau import plateau_next, plateau_replay
from .policies import REGISTRY as POLICY_REGISTRY
from .schedule import POLICIES, POLICY_FIELDS, learning_rate, policy_defaults

__all__ = ["CHAINED", "SCHEDULES", "WARMUP", "Piece", "chained", "resolve_schedule", "parse_schedules", "base_of",
           "schedule_params", "schedule_knobs", "chain_defaults", "check_params", "pieces", "piece_lr", "chain_lr", "ideal_lr",
           "plateau_next", "plateau_replay", "line", "TOLERANCE", "describe_chain_defaults", "every_schedule",
           "planned"]

CHAINED: tuple[str, ...] = tuple(REGISTRY)           # the built-in ones, in their order
WARMUP = "+warmup"
SCHEDULES: tuple[str, ...] = POLICIES + CHAINED     # "every": Caffe's seven and the chained ones
WARMUP_PARAMS = ("warmup_iter", "warmup_start")
WARMUP_FRACTION = 0.05       # warmup_iter = 5% of the run...
WARMUP_START = 0.1           # ...from a tenth of the schedule's value


def every_schedule() -> tuple[str, ...]:
    """Caffe's seven and every chained schedule registered now (a plug-in's too)."""
    return POLICIES + tuple(REGISTRY)


def schedule_knobs() -> list[tuple[str, type]]:
    """(schedule, its Knobs dataclass) for Caffe's seven and every chained schedule registered now."""
    return [(n, p.Knobs) for n, p in POLICY_REGISTRY.items()] + [(n, c.Knobs) for n, c in REGISTRY.items()]


def resolve_schedule(name: str) -> str:
    """The canonical name of any schedule: one of Caffe's seven, a chained one, or ``<either>+warmup``
    (case-insensitive); an unknown name is one line naming the nearest valid one."""
    from ..checks import as_choice

    text = str(name).strip().lower()
    warm = text.endswith(WARMUP)
    core = text[: -len(WARMUP)] if warm else text
    if warm and core in REGISTRY and not REGISTRY[core].warmup:
        raise InputError(f"{core}+warmup: a {core} schedule starts at base_lr; give step+warmup, cosine+warmup...")
    names = every_schedule()
    valid = names + tuple(f"{n}{WARMUP}" for n in names if n not in REGISTRY or REGISTRY[n].warmup)
    return as_choice("lr_policy", text, valid, also="'all' (Caffe's seven) or 'every' (those and the chained ones)") \
        if not (core in names) else core + (WARMUP if warm else "")


def parse_schedules(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` -> Caffe's seven policies in its order; ``"every"`` -> those and the chained schedules;
    ``"step,cosine+warmup"`` -> each named (no duplicates)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(s).strip() for s in items if str(s).strip()]
    if not items:
        raise InputError("no lr_policy given (use a name such as 'step', a list 'step,cosine', 'all' or 'every')")
    out: list[str] = []
    for item in items:
        names = POLICIES if item.lower() == "all" else every_schedule() if item.lower() == "every" else \
            (resolve_schedule(item),)
        out += [n for n in names if n not in out]
    return out


def chained(name: str) -> bool:
    """Whether a schedule needs a chain of segments (every name but Caffe's seven)."""
    return name not in POLICIES


def base_of(name: str) -> tuple[str, bool]:
    """(the schedule without its warm-up, whether it has one): ``step+warmup`` -> (``step``, True)."""
    return (name[: -len(WARMUP)], True) if name.endswith(WARMUP) else (name, False)


def _plugin(base: str):
    if base not in REGISTRY:
        raise InputError(f"unknown schedule {base!r}")
    return REGISTRY[base]


def schedule_params(name: str) -> tuple[str, ...]:
    base, warm = base_of(name)
    return (REGISTRY[base].params if base in REGISTRY else ()) + (WARMUP_PARAMS if warm else ())


def planned(name: str) -> bool:
    """Whether a schedule's chain is known before the run (all but those decided as it trains: plateau)."""
    base, _ = base_of(name)
    return base not in REGISTRY or REGISTRY[base].planned


def chain_defaults(name: str, max_iter: int, base_lr: float) -> dict[str, Any]:
    """The parameters that make a chained schedule a fair contender over ``max_iter`` iterations (its base policy's
    own defaults included, for ``<policy>+warmup``)."""
    base, warm = base_of(name)
    n = int(max_iter)
    out: dict[str, Any] = dict(policy_defaults(base, n)) if base in POLICIES else \
        dict(_plugin(base).defaults(n, base_lr))
    if warm:
        out.update(warmup_iter=max(1, math.ceil(WARMUP_FRACTION * n)), warmup_start=WARMUP_START)
    return out


def check_params(name: str, base_lr: float, max_iter: int, p: dict[str, Any]) -> None:
    """One InputError line for a parameter out of range (warm-up longer than the run, min_lr above base_lr, a
    period of 0...)."""
    base, warm = base_of(name)
    if warm:
        if not 1 <= p["warmup_iter"] < max_iter:
            raise InputError(f"{name}: warmup_iter {p['warmup_iter']} must be in 1..{max_iter - 1} (max_iter "
                             f"{max_iter}): a warm-up longer than the run")
        if not 0 < p["warmup_start"] < 1:
            raise InputError(f"{name}: warmup_start {p['warmup_start']} must be in (0, 1): a fraction of the "
                             "schedule's value (a line through 0 is not one of Caffe's policies)")
    if base in REGISTRY:
        REGISTRY[base].check(name, base_lr, max_iter, p)


def ideal_lr(name: str, base_lr: float, max_iter: int, p: dict[str, Any], its: np.ndarray) -> np.ndarray:
    """The schedule as its formula defines it (what a chain approximates; equal to it for the piecewise-linear
    ones), at iterations ``its``. ``plateau``: its base lr (its drops depend on the run)."""
    base, warm = base_of(name)
    n = int(max_iter)
    its = np.asarray(its, dtype=np.int64)
    if base in POLICIES:
        params = {k: v for k, v in p.items() if k in POLICY_FIELDS}
        out = np.array([learning_rate(base, int(i), base_lr, max_iter=n, **params) for i in its])
    else:
        out = np.asarray(_plugin(base).ideal(base_lr, n, p, its), dtype=float)
    if warm:
        w = p["warmup_iter"]
        end = float(ideal_lr(base, base_lr, n, p, np.array([w]))[0])
        ramp = end * (p["warmup_start"] + (1 - p["warmup_start"]) * its.astype(float) / w)
        out = np.where(its < w, ramp, out)
    return out


def pieces(name: str, base_lr: float, max_iter: int, p: dict[str, Any], *, test_interval: int | None = None,
           tolerance: float = TOLERANCE) -> list[Piece]:
    """The chain of a static schedule over ``max_iter`` iterations (``plateau``: its first piece only; the driver
    plans the rest as the run goes, :func:`plateau_next`)."""
    base, warm = base_of(name)
    n = int(max_iter)
    start = p["warmup_iter"] if warm else 0
    out: list[Piece] = []
    if warm:
        end_lr = float(ideal_lr(base, base_lr, n, p, np.array([start]))[0])
        out.append(line(0, start, (0, end_lr * p["warmup_start"]), (start, end_lr), "warm-up"))
    if base in POLICIES:
        params = {k: v for k, v in p.items() if k in POLICY_FIELDS}
        out.append(Piece(start, n, base, base_lr, gamma=params.get("gamma", 0.0), power=params.get("power", 0.0),
                         stepsize=params.get("stepsize", 0), stepvalue=tuple(params.get("stepvalue", ())),
                         note=f"Caffe's {base}"))
    else:
        out += _plugin(base).pieces(base_lr, n, p, start=start, tol=tolerance * base_lr)
    if len(out) > max(1, n // 2):
        raise InputError(f"{name}: {len(out)} segments in {n} iterations (some shorter than 2): raise max_iter, or "
                         "the period/stepsize, or the tolerance")
    return _spare_test_passes(out, test_interval)


def _spare_test_passes(chain: list[Piece], test_interval: int | None) -> list[Piece]:
    """Move each knot that falls on a test pass one iteration on when both pieces agree there (a continuous
    schedule): the pass then runs once, inside the earlier piece."""
    if not test_interval:
        return chain
    out = list(chain)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        knot = a.end
        la, lb = piece_lr(a, knot), piece_lr(b, knot)
        if knot % test_interval == 0 and knot + 1 < b.end and abs(la - lb) <= 1e-5 * max(abs(la), abs(lb)):
            out[i] = Piece(a.start, knot + 1, a.policy, a.base_lr, a.gamma, a.power, a.stepsize, a.stepvalue, a.note)
            out[i + 1] = Piece(knot + 1, b.end, b.policy, b.base_lr, b.gamma, b.power, b.stepsize, b.stepvalue,
                               b.note)
    return out


def chain_lr(chain: Sequence[Piece], its: np.ndarray) -> np.ndarray:
    """What Caffe logs at each iteration of ``its`` along the chain (each piece's exact float math)."""
    out = np.empty(len(its))
    for k, it in enumerate(np.asarray(its, dtype=np.int64)):
        p = next((q for q in chain if q.start <= it < q.end), chain[-1])
        out[k] = piece_lr(p, int(it))
    return out


def describe_chain_defaults() -> list[tuple[str, str, str]]:
    """(schedule, its default parameters over N iterations, where lr ends): the table --help and the docs print."""
    return [(name, *s.describe()) for name, s in REGISTRY.items()] + [
        ("<any>+warmup", f"warmup_iter N/{1 / WARMUP_FRACTION:g}, warmup_start {WARMUP_START:g}", "as <any>")]
