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

A knot that falls on a test pass, where the schedule is continuous, is moved one iteration on (the two lines agree
there): Caffe tests at the end of a segment and again at the start of the next when the boundary is a multiple of
test_interval, and a moved knot saves that pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .schedule import POLICIES, learning_rate, policy_defaults

__all__ = ["CHAINED", "SCHEDULES", "WARMUP", "Piece", "chained", "resolve_schedule", "parse_schedules", "base_of", "schedule_params", "chain_defaults",
           "pieces", "piece_lr", "chain_lr", "ideal_lr", "plateau_next", "TOLERANCE", "describe_chain_defaults"]

CHAINED: tuple[str, ...] = ("linear", "cosine", "sgdr", "onecycle", "triangular", "plateau")
WARMUP = "+warmup"
SCHEDULES: tuple[str, ...] = POLICIES + CHAINED     # "every": Caffe's seven and the chained ones
TOLERANCE = 0.01       # a smooth schedule's polyline stays within this fraction of base_lr

# The fields each chained schedule reads (beside base_lr and max_iter); "+warmup" adds WARMUP_PARAMS.
CHAIN_PARAMS: dict[str, tuple[str, ...]] = {
    "linear": ("min_lr",),
    "cosine": ("min_lr",),
    "sgdr": ("min_lr", "period", "period_mult"),
    "onecycle": ("max_lr", "peak_at", "anneal_ratio"),
    "triangular": ("max_lr", "stepsize"),
    "plateau": ("gamma", "patience", "cooldown", "min_lr"),
}
WARMUP_PARAMS = ("warmup_iter", "warmup_start")

# The defaults' targets (docs/schedules.md and --help quote these)
ONECYCLE_PEAK = 10.0         # max_lr = 10 x base_lr (Smith: the range test's upper end, base a tenth of it)
ONECYCLE_PEAK_AT = 0.45      # up over 45% of the run, down over the next 45%...
ONECYCLE_ANNEAL = 0.01       # ...then to base_lr/100 over the last 10%
TRIANGULAR_PEAK = 4.0        # max_lr = 4 x base_lr
TRIANGULAR_CYCLES = 2        # two whole cycles per run: stepsize = max_iter / 4
SGDR_CYCLES = 3              # period max_iter / 7, then 2x and 4x: three restarts fill the run
SGDR_MULT = 2.0
PLATEAU_PATIENCE = 2         # test passes without a gain
PLATEAU_FACTOR = 0.1
WARMUP_FRACTION = 0.05       # warmup_iter = 5% of the run...
WARMUP_START = 0.1           # ...from a tenth of the schedule's value


def resolve_schedule(name: str) -> str:
    """The canonical name of any schedule: one of Caffe's seven, a chained one, or ``<either>+warmup``
    (case-insensitive); an unknown name is one line naming the nearest valid one."""
    from ..checks import as_choice

    text = str(name).strip().lower()
    warm = text.endswith(WARMUP)
    core = text[: -len(WARMUP)] if warm else text
    if warm and core == "plateau":
        raise InputError("plateau+warmup: a plateau schedule starts at base_lr; give step+warmup, cosine+warmup...")
    valid = SCHEDULES + tuple(f"{n}{WARMUP}" for n in SCHEDULES if n != "plateau")
    return as_choice("lr_policy", text, valid, also="'all' (Caffe's seven) or 'every' (those and the chained ones)") \
        if not (core in SCHEDULES) else core + (WARMUP if warm else "")


def parse_schedules(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` -> Caffe's seven policies in its order; ``"every"`` -> those and the chained schedules;
    ``"step,cosine+warmup"`` -> each named (no duplicates)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(s).strip() for s in items if str(s).strip()]
    if not items:
        raise InputError("no lr_policy given (use a name such as 'step', a list 'step,cosine', 'all' or 'every')")
    out: list[str] = []
    for item in items:
        names = POLICIES if item.lower() == "all" else SCHEDULES if item.lower() == "every" else \
            (resolve_schedule(item),)
        out += [n for n in names if n not in out]
    return out


def chained(name: str) -> bool:
    """Whether a schedule needs a chain of segments (every name but Caffe's seven)."""
    return name not in POLICIES


def base_of(name: str) -> tuple[str, bool]:
    """(the schedule without its warm-up, whether it has one): ``step+warmup`` -> (``step``, True)."""
    return (name[: -len(WARMUP)], True) if name.endswith(WARMUP) else (name, False)


def schedule_params(name: str) -> tuple[str, ...]:
    base, warm = base_of(name)
    return CHAIN_PARAMS.get(base, ()) + (WARMUP_PARAMS if warm else ())


def chain_defaults(name: str, max_iter: int, base_lr: float) -> dict[str, Any]:
    """The parameters that make a chained schedule a fair contender over ``max_iter`` iterations (its base policy's
    own defaults included, for ``<policy>+warmup``)."""
    base, warm = base_of(name)
    n = int(max_iter)
    out: dict[str, Any] = {}
    if base in POLICIES:
        out.update(policy_defaults(base, n))
    elif base in ("linear", "cosine"):
        out["min_lr"] = 0.0
    elif base == "sgdr":
        out.update(min_lr=0.0, period=max(1, round(n / (2 ** SGDR_CYCLES - 1))), period_mult=SGDR_MULT)
    elif base == "onecycle":
        out.update(max_lr=ONECYCLE_PEAK * base_lr, peak_at=ONECYCLE_PEAK_AT, anneal_ratio=ONECYCLE_ANNEAL)
    elif base == "triangular":
        out.update(max_lr=TRIANGULAR_PEAK * base_lr, stepsize=max(1, math.ceil(n / (2 * TRIANGULAR_CYCLES))))
    elif base == "plateau":
        out.update(gamma=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE, cooldown=0, min_lr=base_lr * 1e-3)
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
    if "min_lr" in p and base != "plateau" and not 0 <= p["min_lr"] < base_lr:
        raise InputError(f"{name}: min_lr {p['min_lr']:g} must be >= 0 and below base_lr {base_lr:g}")
    if base == "plateau":
        if not 0 < p["gamma"] < 1:
            raise InputError(f"{name}: gamma {p['gamma']:g} (the factor a plateau multiplies the lr by) must be in (0, 1)")
        if p["patience"] < 1 or p["cooldown"] < 0:
            raise InputError(f"{name}: patience must be >= 1 and cooldown >= 0 test passes")
        if not 0 <= p["min_lr"] < base_lr:
            raise InputError(f"{name}: min_lr {p['min_lr']:g} must be >= 0 and below base_lr {base_lr:g}")
    if base == "sgdr":
        if p["period"] < 1:
            raise InputError(f"{name}: period {p['period']} must be >= 1 iteration")
        if p["period_mult"] < 1:
            raise InputError(f"{name}: period_mult {p['period_mult']:g} must be >= 1")
    if base in ("onecycle", "triangular") and not p["max_lr"] > base_lr:
        raise InputError(f"{name}: max_lr {p['max_lr']:g} must be above base_lr {base_lr:g}")
    if base == "onecycle":
        if not 0 < p["peak_at"] < 0.5:
            raise InputError(f"{name}: peak_at {p['peak_at']:g} must be in (0, 0.5): up, then as long down, then "
                             "the annihilation")
        if not 0 < p["anneal_ratio"] < 1:
            raise InputError(f"{name}: anneal_ratio {p['anneal_ratio']:g} must be in (0, 1)")
    if base == "triangular" and p["stepsize"] < 1:
        raise InputError(f"{name}: stepsize {p['stepsize']} must be >= 1 iteration")


# ------------------------------------------------------------------------------------------ the pieces


@dataclass(frozen=True)
class Piece:
    """Iterations [start, end) of a chain, trained by one ``caffe train`` with one of Caffe's own policies (its
    solver's max_iter is ``end``)."""

    start: int
    end: int
    policy: str
    base_lr: float
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: tuple[int, ...] = ()
    note: str = ""

    def solver_fields(self) -> dict[str, Any]:
        """The SolverParameter fields of this piece (the policy's own only)."""
        out: dict[str, Any] = {"lr_policy": self.policy, "base_lr": self.base_lr, "max_iter": self.end}
        if self.policy in ("step", "exp", "inv", "multistep", "sigmoid"):
            out["gamma"] = self.gamma
        if self.policy in ("inv", "poly"):
            out["power"] = self.power
        if self.policy in ("step", "sigmoid"):
            out["stepsize"] = self.stepsize
        if self.policy == "multistep":
            out["stepvalue"] = list(self.stepvalue)
        return out


def piece_lr(p: Piece, it: int) -> float:
    """The lr Caffe uses at iteration ``it`` in this piece (its exact float math)."""
    return learning_rate(p.policy, it, p.base_lr, gamma=p.gamma, stepsize=p.stepsize, stepvalue=p.stepvalue,
                         power=p.power, max_iter=p.end)


def line(start: int, end: int, a: tuple[int, float], b: tuple[int, float], note: str = "") -> Piece:
    """The ``inv``, power -1 piece whose lr is the straight line through points ``a`` and ``b`` (iteration, lr):
    base_lr * (1 + gamma * iter) with base_lr its value at iteration 0 (negative for a line that rises late: the
    product is positive where it runs) and gamma its slope over base_lr."""
    (ia, la), (ib, lb) = a, b
    slope = (lb - la) / (ib - ia) if ib != ia else 0.0
    base = la - slope * ia
    if base == 0.0:       # a line through the origin: nudge it (a float32 ulp of the lr)
        base = la * 1e-7 or 1e-12
    return Piece(start, end, "inv", base, gamma=slope / base, power=-1.0, note=note)


def _polyline(f, start: int, end: int, tol: float, note: str, floor: float = 0.0) -> list[Piece]:
    """Lines approximating ``f`` (a vectorised function of the iteration) from ``start`` to ``end``, each as long as
    it can be (greedy, binary search) while no iteration it covers is more than ``tol`` from ``f``: each line is its
    chord moved by the middle of its deviations (the error of a chord, halved; the pieces need not meet), never
    below ``floor`` (a schedule's min_lr: an lr below 0 would climb the loss)."""
    def fit(a: int, b: int) -> tuple[float, float, float]:
        its = np.arange(a, b)
        fa, fb = float(f(np.array([a]))[0]), float(f(np.array([b]))[0])
        chord = fa + (fb - fa) * (its - a) / (b - a)
        dev = f(its) - chord
        shift = (dev.max() + dev.min()) / 2
        lowest = min(fa, fb) + shift
        if lowest < floor:
            shift += floor - lowest
        return fa + shift, fb + shift, float(max(dev.max() - shift, shift - dev.min()))

    out, a = [], start
    while a < end:
        lo, hi = a + 1, end
        while lo < hi:                        # the furthest end b whose line from a stays within tol
            mid = (lo + hi + 1) // 2
            if fit(a, mid)[2] <= tol:
                lo = mid
            else:
                hi = mid - 1
        b = lo
        la, lb, _ = fit(a, b)
        out.append(line(a, b, (a, la), (b, lb), note))
        a = b
    return out


def _cosine(lo: float, hi: float, start: int, length: int):
    return lambda its: lo + (hi - lo) * (1 + np.cos(np.pi * np.clip(its - start, 0, length) / length)) / 2


def ideal_lr(name: str, base_lr: float, max_iter: int, p: dict[str, Any], its: np.ndarray) -> np.ndarray:
    """The schedule as its formula defines it (what a chain approximates; equal to it for the piecewise-linear
    ones), at iterations ``its``. ``plateau``: its base lr (its drops depend on the run)."""
    base, warm = base_of(name)
    n = int(max_iter)
    its = np.asarray(its, dtype=np.int64)
    t = its.astype(float)
    if base in POLICIES:
        out = np.array([learning_rate(base, int(i), base_lr, max_iter=n, **{k: v for k, v in p.items()
                                                                           if k in ("gamma", "stepsize", "stepvalue",
                                                                                    "power")}) for i in its])
    elif base == "linear":
        out = base_lr + (p["min_lr"] - base_lr) * t / n
    elif base == "cosine":
        out = _cosine(p["min_lr"], base_lr, 0, n)(its)
    elif base == "sgdr":
        out = np.empty(len(its))
        for k, (s, length) in enumerate(_cycles(n, p["period"], p["period_mult"])):
            mask = (its >= s) & (its < s + length)
            out[mask] = _cosine(p["min_lr"], base_lr, s, length)(its[mask])
    elif base == "onecycle":
        up, down = _onecycle_knots(n, p["peak_at"])
        low = base_lr * p["anneal_ratio"]
        out = np.interp(t, [0, up, down, n], [base_lr, p["max_lr"], base_lr, low])
    elif base == "triangular":
        half = p["stepsize"]
        phase = (t % (2 * half)) / half
        out = base_lr + (p["max_lr"] - base_lr) * np.where(phase <= 1, phase, 2 - phase)
    elif base == "plateau":
        out = np.full(len(its), float(base_lr))
    else:
        raise InputError(f"unknown schedule {name!r}")
    if warm:
        w = p["warmup_iter"]
        end = float(ideal_lr(base, base_lr, n, p, np.array([w]))[0]) if base != "plateau" else base_lr
        ramp = end * (p["warmup_start"] + (1 - p["warmup_start"]) * t / w)
        out = np.where(its < w, ramp, out)
    return out


def _cycles(n: int, period: int, mult: float) -> list[tuple[int, int]]:
    """(start, length) of each SGDR cycle in a run of ``n`` (the last one cut at the run's end)."""
    out, s, length = [], 0, float(period)
    while s < n:
        size = max(1, int(round(length)))
        out.append((s, min(size, n - s)))
        s += size
        length *= mult
    return out


def _onecycle_knots(n: int, peak_at: float) -> tuple[int, int]:
    up = max(1, round(peak_at * n))
    return up, min(n - 1, 2 * up)


def pieces(name: str, base_lr: float, max_iter: int, p: dict[str, Any], *, test_interval: int | None = None,
           tolerance: float = TOLERANCE) -> list[Piece]:
    """The chain of a static schedule over ``max_iter`` iterations (``plateau``: its first piece only; the driver
    plans the rest as the run goes, :func:`plateau_next`)."""
    base, warm = base_of(name)
    n = int(max_iter)
    tol = tolerance * base_lr
    start = p["warmup_iter"] if warm else 0
    out: list[Piece] = []
    if warm:
        end_lr = float(ideal_lr(base, base_lr, n, p, np.array([start]))[0]) if base != "plateau" else base_lr
        out.append(line(0, start, (0, end_lr * p["warmup_start"]), (start, end_lr), "warm-up"))
    if base in POLICIES:
        params = {k: v for k, v in p.items() if k in ("gamma", "stepsize", "stepvalue", "power")}
        out.append(Piece(start, n, base, base_lr, gamma=params.get("gamma", 0.0), power=params.get("power", 0.0),
                         stepsize=params.get("stepsize", 0), stepvalue=tuple(params.get("stepvalue", ())),
                         note=f"Caffe's {base}"))
    elif base == "linear":
        out.append(line(start, n, (0, base_lr), (n, p["min_lr"]), "linear decay"))
    elif base == "cosine":
        out += _polyline(_cosine(p["min_lr"], base_lr, 0, n), start, n, tol, "cosine", floor=p["min_lr"])
    elif base == "sgdr":
        for k, (s, length) in enumerate(_cycles(n, p["period"], p["period_mult"])):
            lo = max(s, start)
            if lo < s + length:
                out += _polyline(_cosine(p["min_lr"], base_lr, s, length), lo, s + length, tol, f"cycle {k + 1}",
                                 floor=p["min_lr"])
    elif base == "onecycle":
        up, down = _onecycle_knots(n, p["peak_at"])
        low = base_lr * p["anneal_ratio"]
        for a, b, la, lb, note in ((0, up, base_lr, p["max_lr"], "up"), (up, down, p["max_lr"], base_lr, "down"),
                                   (down, n, base_lr, low, "annihilation")):
            if b > start:
                out.append(line(max(a, start), b, (a, la), (b, lb), note))
    elif base == "triangular":
        half = p["stepsize"]
        k = start // half
        while k * half < n:
            a, b = k * half, min(n, (k + 1) * half)
            rising = k % 2 == 0
            la, lb = (base_lr, p["max_lr"]) if rising else (p["max_lr"], base_lr)
            out.append(line(max(a, start), b, (a, la), ((k + 1) * half, lb), "up" if rising else "down"))
            k += 1
    elif base == "plateau":
        out.append(Piece(start, n, "fixed", base_lr, note="plateau: base_lr until the first drop"))
    else:
        raise InputError(f"unknown schedule {name!r}")
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


# ------------------------------------------------------------------------------------------ plateau


@dataclass
class PlateauState:
    """Where a plateau run stands: its lr now, the test pass it last improved at, the passes cooling down."""

    lr: float
    best: float | None = None
    best_pass: int = -1
    cooldown_until: int = -1
    drops: list[tuple[int, float]] = field(default_factory=list)   # (iteration, new lr)


def plateau_replay(base_lr: float, p: dict[str, Any], tests: Sequence[tuple[int, float]], maximize: bool,
                   until: int | None = None) -> PlateauState:
    """Replay the rule over the test passes ``tests`` ((iteration, value), in order), up to iteration ``until``:
    after a pass with no gain over the best for ``patience`` passes (outside a cooldown), the lr is multiplied by
    ``gamma`` (never below ``min_lr``) from the next iteration on."""
    s = PlateauState(base_lr)
    sign = 1.0 if maximize else -1.0
    for k, (it, v) in enumerate(tests):
        if until is not None and it > until:
            break
        if s.best is None or (math.isfinite(v) and sign * v > sign * s.best):
            s.best, s.best_pass = v, k
            continue
        if k <= s.cooldown_until:
            continue
        lower = max(p["min_lr"], s.lr * p["gamma"])
        if k - s.best_pass >= p["patience"] and lower < s.lr * (1 - 1e-6):   # (at min_lr already: no drop)
            s.lr = lower
            s.drops.append((it + 1, s.lr))
            s.best_pass = k                      # a new plateau starts counting here
            s.cooldown_until = k + p["cooldown"]
    return s


def plateau_next(base_lr: float, p: dict[str, Any], tests: Sequence[tuple[int, float]], maximize: bool, *,
                 at: int, max_iter: int, test_interval: int) -> Piece:
    """The piece a plateau run trains from iteration ``at``: its lr after the passes so far, up to the first test
    pass where it could drop (just past it: the decision is taken at that pass, the new lr applies from the next
    iteration), or to the end of the run."""
    s = plateau_replay(base_lr, p, tests, maximize, until=at)
    passes = len([t for t in tests if t[0] <= at])
    earliest = max(s.best_pass + p["patience"], s.cooldown_until + 1, passes)   # a pass index
    end = min(max_iter, earliest * test_interval + 1)
    if end <= at:
        end = min(max_iter, at + test_interval)
    why = f"plateau: lr {s.lr:g}" + (f" after {len(s.drops)} drop{'s' * (len(s.drops) > 1)}" if s.drops else "")
    return Piece(at, end, "fixed", s.lr, note=why)


def describe_chain_defaults() -> list[tuple[str, str, str]]:
    """(schedule, its default parameters over N iterations, where lr ends): the table --help and the docs print."""
    return [
        ("linear", "min_lr 0", "min_lr"),
        ("cosine", f"min_lr 0; a polyline within {TOLERANCE:.0%} of base_lr", "min_lr"),
        ("sgdr", f"min_lr 0, period N/{2 ** SGDR_CYCLES - 1}, period_mult {SGDR_MULT:g} (3 cycles)", "min_lr"),
        ("onecycle", f"max_lr {ONECYCLE_PEAK:g} x base_lr, peak_at {ONECYCLE_PEAK_AT:g}, anneal_ratio "
                     f"{ONECYCLE_ANNEAL:g}", f"base_lr/{1 / ONECYCLE_ANNEAL:g}"),
        ("triangular", f"max_lr {TRIANGULAR_PEAK:g} x base_lr, stepsize N/{2 * TRIANGULAR_CYCLES} (2 cycles)",
         "base_lr"),
        ("plateau", f"gamma {PLATEAU_FACTOR:g} after patience {PLATEAU_PATIENCE} test passes without a gain, "
                    "cooldown 0, min_lr base_lr/1000", "the run decides"),
        ("<any>+warmup", f"warmup_iter N/{1 / WARMUP_FRACTION:g}, warmup_start {WARMUP_START:g}", "as <any>"),
    ]
