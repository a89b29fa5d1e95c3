"""Plain-words diagnosis of one run's curves, grounded in common Caffe tuning practice.

The rules (and the advice they give) follow the usual trial-and-error loop of tuning a net:

* loss explodes or turns nan -> the learning rate is too big: lower ``base_lr`` 10x;
* loss hardly moves -> the learning rate is too small (or the data/labels are wrong): raise ``base_lr`` 10x;
* the metric is still climbing at the end -> train longer (more iterations);
* train loss falls while test loss rises -> overfitting: dropout (0.3-0.8 on the fc layers), weight decay
  (L2, tuned in 10x steps), data augmentation, more data;
* accuracy sat flat and then jumped -> nets can plateau for a long while before learning: do not stop early.

Every threshold is a named field of :class:`Thresholds` (documented in ``docs/parse.md``). Functions here
are pure: curves in, findings out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..logs.curves import TOP1, TOP5, Curves

__all__ = ["Finding", "Thresholds", "diagnose", "metric_roles"]


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a stable ``code`` (for tables and tests), a short ``title``, what was seen (``detail``)
    and what to do (``advice``)."""

    code: str
    title: str
    detail: str
    advice: str

    def __str__(self) -> str:
        return f"{self.title}: {self.detail} {self.advice}"


@dataclass(frozen=True)
class Thresholds:
    """Knobs of the rules. Fractions are of the number of logged points unless said otherwise."""

    window: float = 0.2
    """Fraction of the train-loss points averaged at the start and at the end (at least 1 point each)."""
    explode_ratio: float = 3.0
    """``diverged`` when the largest train loss exceeds this many times the first one and the final loss
    is above the first one (a loss that only bounced early and then recovered is not flagged)."""
    saturated_loss: float = 87.0
    """``diverged`` when the train loss reaches this: Caffe's SoftmaxWithLoss caps at -ln(FLT_MIN) = 87.34,
    which it prints once every probability has underflowed."""
    stall_rel_change: float = 0.05
    """``stalled`` when the mean train loss of the end window is within this relative change of the start
    window's (e.g. 2.01 -> 1.99 is 1%)..."""
    stall_acc_gain: float = 0.05
    """...and the best test top-1 gained less than this (absolute) over the first test."""
    improve_points: int = 3
    """``still-improving`` looks at the last this-many test points (train-loss points when there is no test)."""
    improve_delta: float = 0.01
    """``still-improving`` when top-1 rose by more than this over those points and the last value is the
    best (for a loss: fell by more than this fraction of its value)."""
    overfit_rise: float = 0.10
    """``overfitting`` when the final test loss is this fraction above its minimum..."""
    overfit_train_drop: float = 0.10
    """...while the train loss at the end is this fraction below the train loss at the test-loss minimum."""
    plateau_points: int = 3
    """``late-jump`` needs at least this many consecutive test points on a plateau..."""
    plateau_band: float = 0.03
    """...whose top-1 values stay within this band (max - min)..."""
    jump_delta: float = 0.15
    """...followed by a rise of at least this much top-1 within two test points..."""
    late_fraction: float = 0.25
    """...that happens after this fraction of the run's iterations."""


def metric_roles(curves: Curves, top1: str | None = None, top5: str | None = None) -> dict[str, str | None]:
    """Which column is which: ``top1``, ``top5``, ``test_loss``, ``train_loss``.

    ``top1``/``top5`` when given (the names a sweep recorded for its net), then
    :data:`~caffegen.logs.curves.TOP1` / ``TOP5`` (caffegen's names) win; otherwise any test column with
    ``accuracy``/``acc``/``top`` in its name, the one mentioning 5 being top-5.
    """
    names = curves.test.metrics()
    top1 = next((n for n in (top1, TOP1) if n in names), None)
    top5 = next((n for n in (top5, TOP5) if n in names), None)
    for name in names:
        low = name.lower()
        if "@net" in low or not ("acc" in low or "top" in low):
            continue
        if "5" in low.replace("0.5", ""):
            top5 = top5 or name
        else:
            top1 = top1 or name
    return {"top1": top1, "top5": top5, "test_loss": curves.test_loss(), "train_loss": curves.train_loss()}


def _finite(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(it, v) for it, v in series if v is not None and math.isfinite(v)]


def _train_loss_series(curves: Curves, roles: dict) -> list[tuple[int, float]]:
    if roles["train_loss"]:
        return curves.train.series(roles["train_loss"])
    return list(curves.loss_log)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def diagnose(curves: Curves, *, max_iter: int | None = None, thresholds: Thresholds = Thresholds(),
             top1: str | None = None) -> list[Finding]:
    """Findings for one run, most serious first; ``[healthy]`` when nothing is wrong.

    ``max_iter`` (the solver's) lets the text say whether the run reached its end.
    """
    t = thresholds
    curves = curves.resolved()
    roles = metric_roles(curves, top1)
    loss = _train_loss_series(curves, roles)
    findings: list[Finding] = []

    diverged = _diverged(curves, loss, t)
    if diverged:
        findings.append(diverged)
    else:
        for rule in (_stalled, _overfitting, _still_improving, _late_jump):
            f = rule(curves, roles, loss, t, max_iter)
            if f:
                findings.append(f)
    if curves.fatal_line:
        findings.insert(0, Finding("crashed", "Caffe stopped with an error", curves.fatal_line,
                                   "Fix the cause in that line (paths, shapes, layer names) and rerun."))
    if not findings:
        findings.append(Finding("healthy", "Healthy", "Loss went down, no divergence, no overfitting seen.",
                                "Nothing to change; compare it with the other variants."))
    return findings


def _diverged(curves: Curves, loss: list[tuple[int, float]], t: Thresholds) -> Finding | None:
    bad = next(((it, v) for it, v in loss if v is not None and not math.isfinite(v)), None)
    if bad is None:
        bad = next(((it, v) for it, v in curves.loss_log if not math.isfinite(v)), None)
    if bad is not None or curves.nonfinite:
        where = f"at iteration {bad[0]}" if bad else "during training"
        return Finding("diverged", "Diverged", f"The train loss became {bad[1] if bad else 'nan'} {where}.",
                       "The learning rate is too big: lower base_lr by 10x (e.g. 0.01 -> 0.001).")
    fin = _finite(loss)
    if not fin:
        return None
    first = fin[0][1]
    peak_it, peak = max(fin, key=lambda p: p[1])
    if peak >= t.saturated_loss:
        return Finding("diverged", "Diverged",
                       f"The train loss hit {peak:g} at iteration {peak_it}: the softmax saturated "
                       "(every probability underflowed).",
                       "The learning rate is too big: lower base_lr by 10x.")
    if first > 0 and peak > t.explode_ratio * first and fin[-1][1] > first:
        return Finding("diverged", "Loss exploded",
                       f"The train loss rose from {first:g} to {peak:g} (iteration {peak_it}) and ended at "
                       f"{fin[-1][1]:g}.", "The learning rate is too big: lower base_lr by 10x.")
    return None


def _stalled(curves, roles, loss, t: Thresholds, max_iter) -> Finding | None:
    fin = _finite(loss)
    if len(fin) < 2:
        return None
    k = max(1, int(len(fin) * t.window))
    start, end = _mean([v for _, v in fin[:k]]), _mean([v for _, v in fin[-k:]])
    change = (start - end) / abs(start) if start else 0.0
    gain = None
    if roles["top1"]:
        acc = _finite(curves.test.series(roles["top1"]))
        if acc:
            gain = max(v for _, v in acc) - acc[0][1]
    if change < t.stall_rel_change and (gain is None or gain < t.stall_acc_gain):
        acc_txt = f"; top-1 gained {gain:.3f}" if gain is not None else ""
        return Finding("stalled", "Stalled",
                       f"The train loss barely moved ({start:.4g} -> {end:.4g}, {change:+.1%}){acc_txt}.",
                       "The learning rate is probably too small: raise base_lr by 10x. If that does not help, "
                       "check the data and labels (shuffled? the right list file? the right scale?).")
    return None


def _overfitting(curves, roles, loss, t: Thresholds, max_iter) -> Finding | None:
    name = roles["test_loss"]
    if not name:
        return None
    test = _finite(curves.test.series(name))
    if len(test) < 3:
        return None
    min_it, min_v = min(test, key=lambda p: p[1])
    final_it, final_v = test[-1]
    if min_it == final_it or final_v <= min_v * (1 + t.overfit_rise):
        return None
    fin = _finite(loss)
    at_min = [v for it, v in fin if it <= min_it]
    after = [v for it, v in fin if it > min_it]
    if not at_min or not after:
        return None
    k = max(1, int(len(fin) * t.window))
    train_then, train_end = at_min[-1], _mean(after[-k:])
    if train_end > train_then * (1 - t.overfit_train_drop):
        return None
    return Finding("overfitting", "Overfitting",
                   f"Test loss was lowest ({min_v:.4g}) at iteration {min_it} and rose to {final_v:.4g}, while "
                   f"the train loss kept falling ({train_then:.4g} -> {train_end:.4g}).",
                   "Regularise: dropout on the fc layers (0.3-0.8, start at 0.5), weight decay (L2, change it in "
                   "10x steps), data augmentation or more data; or keep the snapshot of the best iteration.")


def _still_improving(curves, roles, loss, t: Thresholds, max_iter) -> Finding | None:
    n = t.improve_points
    metric = roles["top1"]
    series = _finite(curves.test.series(metric)) if metric else []
    higher = True
    if len(series) < n:
        metric = roles["test_loss"]
        series = _finite(curves.test.series(metric)) if metric else []
        higher = False
    if len(series) < n:
        metric, series, higher = "train loss", _finite(loss), False
    if len(series) < max(n, 2):
        return None
    tail = [v for _, v in series[-n:]]
    last_it = series[-1][0]
    if higher:
        rising = tail[-1] - tail[0] > t.improve_delta and tail[-1] >= max(v for _, v in series)
        amount = f"{tail[0]:.3g} -> {tail[-1]:.3g}"
    else:
        rising = tail[0] > 0 and (tail[0] - tail[-1]) / tail[0] > t.improve_delta and \
            tail[-1] <= min(v for _, v in series)
        amount = f"{tail[0]:.4g} -> {tail[-1]:.4g}"
    if not rising:
        return None
    end = f" (iteration {last_it} of max_iter {max_iter})" if max_iter else f" (iteration {last_it})"
    return Finding("still-improving", "Still improving at the end",
                   f"{metric} was still {'rising' if higher else 'falling'} over the last {n} points: "
                   f"{amount}{end}.",
                   "Train longer: raise max_iter (e.g. 2x) and keep the lr schedule's shape.")


def _late_jump(curves, roles, loss, t: Thresholds, max_iter) -> Finding | None:
    metric = roles["top1"]
    if not metric:
        return None
    series = _finite(curves.test.series(metric))
    if len(series) < t.plateau_points + 1:
        return None
    span = max_iter or curves.max_iter_seen or series[-1][0]
    for i in range(t.plateau_points, len(series)):
        plateau = [v for _, v in series[i - t.plateau_points:i]]
        if max(plateau) - min(plateau) > t.plateau_band:
            continue
        for j in (i, i + 1):
            if j < len(series) and series[j][1] - max(plateau) >= t.jump_delta and \
                    series[j][0] >= t.late_fraction * span:
                start_it = series[i - t.plateau_points][0]
                return Finding("late-jump", "Accuracy jumped after a plateau",
                               f"{metric} sat near {_mean(plateau):.3f} from iteration {start_it} to "
                               f"{series[i - 1][0]}, then jumped to {series[j][1]:.3f} at iteration {series[j][0]}.",
                               "Do not stop such runs early: a flat accuracy can precede real learning. "
                               "Watch the loss rather than the accuracy when deciding to stop.")
    return None
