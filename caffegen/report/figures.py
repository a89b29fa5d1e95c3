"""Every figure caffegen draws (matplotlib, Agg backend): one run's curves, the sweep overlay and heatmap, the lr
schedules of ``caffegen schedule``.

Smoothing is an exponential moving average over the logged train-loss points, ``s = a*s + (1-a)*x`` with
``a = smooth`` (default 0.6), started at the first point; non-finite points are skipped by the average and
drawn as red crosses at the top of the loss axis (that is where a run diverged).
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..logs.curves import TOP1, Curves
from .diagnose import metric_roles

if TYPE_CHECKING:
    from .analysis import RunReport

__all__ = ["plot_curves", "ema", "overlay_figure", "heatmap_figure", "run_figure", "plot_schedules"]


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


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _style_maps(runs: list[RunReport]):
    policies = sorted({str(r.axes.get("lr_policy", "")) for r in runs})
    lrs = sorted({r.axes.get("base_lr") for r in runs if r.axes.get("base_lr") is not None}, reverse=True)
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    styles = ["-", "--", ":", "-."]
    if len(policies) < 2:  # nothing to tell apart by policy: one colour per run
        names = [r.variant for r in runs]
        cmap = matplotlib.colormaps["tab20"]
        return {n: cmap(i % 20) for i, n in enumerate(names)}, {lr: styles[i % len(styles)] for i, lr in enumerate(lrs)}, True
    colors = {p: cmap(i % 10) for i, p in enumerate(policies)}
    lstyle = {lr: styles[i % len(styles)] for i, lr in enumerate(lrs)}
    return colors, lstyle, False


def overlay_figure(runs: list[RunReport], metric: str = TOP1) -> bytes:
    """Test top-1 (left) and smoothed train loss (right) of every run, colour = policy, dash = base_lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors, lstyle, by_run = _style_maps(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    for r in runs:
        if r.curves is None:
            continue
        c = colors.get(r.variant if by_run else str(r.axes.get("lr_policy", "")))
        ls = lstyle.get(r.axes.get("base_lr"), "-")
        curves = r.curves.resolved()
        roles = metric_roles(curves)
        test = curves.test.series(roles.get("top1") or metric)
        if test:
            ax1.plot([i for i, _ in test], [v for _, v in test], ls, color=c, label=r.variant, marker=".", ms=3)
        loss_name = roles.get("train_loss")
        train = curves.train.series(loss_name) if loss_name else list(curves.loss_log)
        if train:
            xs = [i for i, _ in train]
            ys = [v if math.isfinite(v) else math.nan for _, v in train]
            ax2.plot(xs, ema(ys, 0.6), ls, color=c, label=r.variant)
            bad = [i for i, v in train if not math.isfinite(v)]
            if bad:
                ax2.plot([bad[0]], [ax2.get_ylim()[1]], "x", color=c, ms=9, mew=2)
    ax1.set(title=f"test {metric}", xlabel="iteration", ylabel=metric)
    ax1.grid(alpha=.3)
    ax2.set(title="train loss (EMA 0.6; x = first nan/inf)", xlabel="iteration", ylabel="loss", yscale="log")
    ax2.grid(alpha=.3)
    handles, labels = ax1.get_legend_handles_labels()
    if not handles:
        handles, labels = ax2.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def heatmap_figure(runs: list[RunReport]) -> bytes | None:
    """base_lr x lr_policy grid of best top-1 (the best over any other axes); None without both axes."""
    lrs = sorted({r.axes["base_lr"] for r in runs if "base_lr" in r.axes}, reverse=True)
    pols = [p for p in ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
            if any(r.axes.get("lr_policy") == p for r in runs)]
    if not lrs or not pols:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.full((len(lrs), len(pols)), np.nan)
    status = [["" for _ in pols] for _ in lrs]
    for r in runs:
        if r.axes.get("base_lr") in lrs and r.axes.get("lr_policy") in pols:
            i, j = lrs.index(r.axes["base_lr"]), pols.index(r.axes["lr_policy"])
            if r.best_top1 is not None and not (grid[i, j] >= r.best_top1):
                grid[i, j] = r.best_top1
            if r.status != "done":
                status[i][j] = r.status
    fig, ax = plt.subplots(figsize=(1.3 * len(pols) + 2, 0.7 * len(lrs) + 1.6))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=max(1e-9, np.nanmax(grid))
                   if np.isfinite(grid).any() else 1, aspect="auto")
    ax.set_xticks(range(len(pols)), pols)
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set(xlabel="lr_policy", ylabel="base_lr", title="best test top-1")
    for i in range(len(lrs)):
        for j in range(len(pols)):
            txt = "-" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            if status[i][j]:
                txt += f"\n{status[i][j]}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if math.isnan(grid[i, j]) or grid[i, j] < 0.6 * np.nanmax(grid) else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _png(fig)


def run_figure(r: RunReport, out_png: Path) -> bytes | None:
    """The run's own curves (caffegen plot), written beside its log and returned for embedding."""
    if r.curves is None:
        return None
    return plot_curves(r.curves, out_png, title=r.variant).read_bytes()


def plot_schedules(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, *,
                   title: str = "Learning-rate schedules (Caffe's GetLearningRate)") -> Path:
    """Plot lr against iteration for each named curve on a log y axis and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        for label, (its, lrs) in curves.items():
            y = np.where(lrs > 0, lrs, np.nan)  # log axis: lr = 0 has no place on it
            ax.plot(its, y, label=label, linewidth=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("learning rate")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
