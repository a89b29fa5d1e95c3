"""Draw one run's curves: train loss (raw + smoothed), test loss, test top-1/top-5, lr (log axis).

Smoothing is an exponential moving average over the logged train-loss points, ``s = a*s + (1-a)*x`` with
``a = smooth`` (default 0.6), started at the first point; non-finite points are skipped by the average and
drawn as red crosses at the top of the loss axis (that is where a run diverged).
"""
from __future__ import annotations

import math
from pathlib import Path

from .diagnose import metric_roles
from .parse import Curves

__all__ = ["plot_curves", "ema"]


def ema(values: list[float], alpha: float) -> list[float]:
    """Exponential moving average that steps over nan/inf (they stay nan in the output)."""
    out, s = [], None
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(float("nan"))
            continue
        s = v if s is None else alpha * s + (1 - alpha) * v
        out.append(s)
    return out


def plot_curves(curves: Curves, out_png: str | Path, *, title: str | None = None, smooth: float = 0.6) -> Path:
    """Write a PNG with two panels (losses; accuracies + lr) against iteration; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves.resolved()
    roles = metric_roles(curves)
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    bad_x: list[int] = []
    if roles["train_loss"]:
        ser = curves.train.series(roles["train_loss"])
    else:
        ser = list(curves.loss_log)
    if ser:
        xs, ys = [p[0] for p in ser], [p[1] for p in ser]
        finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        bad_x = [x for x, y in zip(xs, ys) if not math.isfinite(y)]
        if finite:
            ax_loss.plot([p[0] for p in finite], [p[1] for p in finite], color="tab:blue", alpha=0.35, lw=1,
                         label="train loss")
        ax_loss.plot(xs, ema(ys, smooth), color="tab:blue", lw=2, label=f"train loss (EMA {smooth:g})")
    if roles["test_loss"]:
        tser = curves.test.series(roles["test_loss"])
        ax_loss.plot([p[0] for p in tser if math.isfinite(p[1])], [p[1] for p in tser if math.isfinite(p[1])],
                     "o-", color="tab:orange", label="test loss")
        bad_x += [p[0] for p in tser if not math.isfinite(p[1])]
    if bad_x:
        top = ax_loss.get_ylim()[1] if ax_loss.lines else 1.0
        ax_loss.plot(bad_x, [top] * len(bad_x), "x", color="red", ms=9, mew=2, label="nan / inf (diverged)")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(loc="upper right", fontsize=8)

    for role, colour, label in (("top1", "tab:green", "test top-1"), ("top5", "tab:purple", "test top-5")):
        if roles[role]:
            s = [p for p in curves.test.series(roles[role]) if math.isfinite(p[1])]
            ax_acc.plot([p[0] for p in s], [p[1] for p in s], "o-", color=colour, label=f"{label} ({roles[role]})")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_xlabel("iteration")
    ax_acc.grid(alpha=0.3)
    lr = [(r["NumIters"], r["LearningRate"]) for r in curves.train.rows
          if isinstance(r.get("LearningRate"), float) and math.isfinite(r["LearningRate"]) and r["LearningRate"] > 0]
    if lr:
        ax_lr = ax_acc.twinx()
        ax_lr.step([p[0] for p in lr], [p[1] for p in lr], where="post", color="gray", ls="--", label="lr")
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate (log)")
        ax_lr.legend(loc="lower right", fontsize=8)
    if ax_acc.lines:
        ax_acc.legend(loc="upper left", fontsize=8)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
