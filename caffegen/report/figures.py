"""Every figure caffegen draws (matplotlib, Agg backend): one run's curves, the sweep overlay and heatmap, the lr
schedules of ``caffegen schedule``.

Smoothing is an exponential moving average over the logged train-loss points, ``s = a*s + (1-a)*x`` with
``a = smooth`` (default 0.6), started at the first point; non-finite points are skipped by the average and
drawn as red crosses at the top of the loss axis (that is where a run diverged).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..layout import study_storage
from ..logs.curves import Curves
from ..plotting import ema, png_bytes, pyplot, save_png
from ..prototxt.chains import every_schedule, planned
from ..run.status import DONE
from .diagnose import metric_roles

if TYPE_CHECKING:
    from .analysis import RunReport, VariantReport

__all__ = ["plot_curves", "curves_figure", "lr_figure", "heatmap_figure", "run_figure", "plot_schedules",
           "study_figures"]


def plot_curves(curves: Curves, out_png: str | Path, *, title: str | None = None, smooth: float = 0.6) -> Path:
    """Write a PNG with two panels (losses; accuracies + lr) against iteration; return its path."""
    plt = pyplot()

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
    return save_png(fig, out_png)


def _panels(runs: list[RunReport]) -> list[tuple[str, list[RunReport]]]:
    """One panel per lr_policy (in the schedule module's order) when the sweep has several, else one panel of every
    run."""
    policies = _policies(runs)
    if len(policies) < 2:
        return [("", runs)]
    return [(p, [r for r in runs if str(r.axes.get("lr_policy")) == p]) for p in policies]


def _lr_colours(runs: list[RunReport]) -> dict[Any, Any]:
    import matplotlib

    keys = sorted({r.axes.get("base_lr", r.values.get("grp") or r.variant) for r in runs}, key=str)
    lrs = [k for k in keys if isinstance(k, (int, float))]
    cmap = matplotlib.colormaps["viridis" if lrs else "tab20"]
    order = sorted(lrs) if lrs else keys
    return {k: cmap(i / max(1, len(order) - 1) * 0.9 if lrs else i % 20) for i, k in enumerate(order)}


def _series(curves: Curves, table: str, name: str | None, x: str) -> list[tuple[float, float]]:
    if not name:
        return []
    rows = (curves.test if table == "test" else curves.train).rows
    return [(r[x], r[name]) for r in rows if r.get(name) is not None and r.get(x) is not None
            and r[x] == r[x]]


def curves_figure(runs: list[RunReport], what: str = "top1", x: str = "NumIters", top1: str | None = None) -> bytes:
    """Small multiples, one panel per lr_policy: each base_lr's test top-1 (``what="top1"``) or smoothed train loss
    (``"loss"``, log axis) against iteration (``x="NumIters"``) or wall-clock seconds (``x="Seconds"``): 21
    curves on one axis are unreadable, 3 on each of 7 are not. Repeats are thin lines of their variant's colour."""
    plt = pyplot()

    panels = _panels(runs)
    cols = min(4, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols + 1.5, 2.8 * rows_n + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    colours = _lr_colours(runs)
    labelled: set[Any] = set()
    for ax, (policy, members) in zip(axes.flat, panels):
        for r in members:
            if r.curves is None:
                continue
            curves = r.curves.resolved()
            roles = metric_roles(curves, top1)
            key = r.axes.get("base_lr", r.values.get("grp") or r.variant)
            repeat = r.values.get("seed") not in (None, 0)
            if what == "top1":
                ser = _series(curves, "test", roles.get("top1"), x)
                ys = [v for _, v in ser]
            else:
                ser = _series(curves, "train", roles.get("train_loss"), x)
                ys = ema([v if math.isfinite(v) else math.nan for _, v in ser], 0.6)
            if not ser:
                continue
            label = None if key in labelled or repeat else f"base_lr {key:g}" if isinstance(key, float) else str(key)
            labelled.add(key)
            ax.plot([a for a, _ in ser], ys, "-" if what == "loss" else ".-", color=colours.get(key), ms=3,
                    lw=0.8 if repeat else 1.6, alpha=0.6 if repeat else 1.0, label=label)
            if what == "top1" and x == "NumIters" and not repeat:
                _lr_shape(ax, curves, colours.get(key), dropped=policy is not None and not planned(str(policy)))
        ax.set_title(policy or ("test top-1" if what == "top1" else "train loss"), fontsize=9)
        ax.grid(alpha=0.3)
        if what == "loss":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    xlabel = "iteration" if x == "NumIters" else "wall-clock seconds"
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel("test top-1 (dotted: the lr's shape; dashed: a plateau's drop)" if what == "top1" and
                  x == "NumIters" else "test top-1" if what == "top1" else "train loss (EMA 0.6)", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1:]:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return png_bytes(fig)


def _lr_shape(ax, curves: Curves, colour: Any, dropped: bool) -> None:
    """The run's logged lr, as a fraction of its largest (a dotted line on a hidden 0..1 axis: each panel shows the
    schedule's shape); with ``dropped`` (a plateau run), a dashed mark where the lr fell."""
    lr = [(r["NumIters"], r["LearningRate"]) for r in curves.train.rows
          if isinstance(r.get("LearningRate"), float) and math.isfinite(r["LearningRate"])]
    if len(lr) < 2:
        return
    top = max(v for _, v in lr) or 1.0
    twin = getattr(ax, "_lr_twin", None)
    if twin is None:
        twin = ax._lr_twin = ax.twinx()
        twin.set_ylim(0, 1.05)
        twin.set_yticks([])
    twin.plot([i for i, _ in lr], [v / top for _, v in lr], ":", color=colour, lw=0.9, alpha=0.6)
    if dropped:
        for (_, a), (i, b) in zip(lr, lr[1:]):
            if b < 0.99 * a:
                ax.axvline(i, color=colour, ls="--", lw=0.8, alpha=0.8)


def _policies(items) -> list[Any]:
    """The lr_policy values present, Caffe's seven then the chained schedules, any other (+warmup) after, sorted."""
    present = {str(x.axes["lr_policy"]) for x in items if "lr_policy" in x.axes}
    order = every_schedule()
    return [p for p in order if p in present] + sorted(present - set(order))


def lr_figure(variants: list[VariantReport], metric: str = "top-1") -> bytes | None:
    """Best test metric against base_lr (log axis), one line per lr_policy, with 95% error bars: the default view of
    a learning-rate sweep. None without a base_lr axis of two values or more."""
    lrs = sorted({v.axes["base_lr"] for v in variants if isinstance(v.axes.get("base_lr"), (int, float))})
    if len(lrs) < 2:
        return None
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    policies = _policies(variants) or [None]
    cmap = plt.colormaps["tab10"]
    for i, policy in enumerate(policies):
        pts = sorted(((v.axes["base_lr"], v) for v in variants if "base_lr" in v.axes and v.score is not None
                      and (policy is None or str(v.axes.get("lr_policy")) == policy)), key=lambda t: t[0])
        if not pts:
            continue
        xs = [lr for lr, _ in pts]
        ys = [v.score for _, v in pts]
        err = [[v.score - v.interval[0] if v.interval else 0 for _, v in pts],
               [v.interval[1] - v.score if v.interval else 0 for _, v in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, color=cmap(i % 10), label=policy or "all runs",
                    ms=4, lw=1.4)
    ax.set_xscale("log")
    ax.set(xlabel="base_lr", ylabel=f"best test {metric}", title=f"best test {metric} by base_lr (95% intervals)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return png_bytes(fig)


def heatmap_figure(variants: list[VariantReport], metric: str = "top-1") -> bytes | None:
    """base_lr x lr_policy grid of the variants' scores (the best over any other axes, in the metric's direction:
    brighter is better); None without both axes."""
    lrs = sorted({v.axes["base_lr"] for v in variants if "base_lr" in v.axes}, reverse=True)
    pols = _policies(variants)
    if not lrs or not pols:
        return None
    plt = pyplot()

    maximize = all(v.maximize for v in variants)
    grid = np.full((len(lrs), len(pols)), np.nan)
    status = [["" for _ in pols] for _ in lrs]
    for v in variants:
        if v.axes.get("base_lr") in lrs and str(v.axes.get("lr_policy")) in pols:
            i, j = lrs.index(v.axes["base_lr"]), pols.index(str(v.axes["lr_policy"]))
            if v.score is not None and (math.isnan(grid[i, j]) or (v.score > grid[i, j]) == maximize):
                grid[i, j] = v.score
            if v.status != DONE:
                status[i][j] = v.status
    fig, ax = plt.subplots(figsize=(1.3 * len(pols) + 2, 0.7 * len(lrs) + 1.6))
    finite = grid[np.isfinite(grid)]
    lo, hi = (0.0, max(1e-9, float(finite.max()))) if maximize and finite.size else \
        ((float(finite.min()), float(finite.max()) + 1e-9) if finite.size else (0.0, 1.0))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis" if maximize else "viridis_r", vmin=lo, vmax=hi,
                   aspect="auto")
    ax.set_xticks(range(len(pols)), pols)
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set(xlabel="lr_policy", ylabel="base_lr", title=f"best test {metric}" + ("" if maximize else " (lower is better)"))
    for i in range(len(lrs)):
        for j in range(len(pols)):
            txt = "-" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            if status[i][j]:
                txt += f"\n{status[i][j]}"
            bright = (grid[i, j] - lo) / (hi - lo) if not math.isnan(grid[i, j]) else 0.0
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="black" if (bright >= 0.6 if maximize else bright <= 0.4) else "white")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return png_bytes(fig)


def run_figure(r: RunReport, out_png: Path) -> bytes | None:
    """The run's own curves (caffegen plot), written beside its log and returned for embedding."""
    if r.curves is None:
        return None
    return plot_curves(r.curves, out_png, title=r.variant).read_bytes()


def plot_schedules(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, *,
                   ideal: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   title: str = "Learning-rate schedules (Caffe's GetLearningRate)") -> Path:
    """Plot lr against iteration for each named curve (what Caffe uses) and, dashed in the same colour, the ideal
    curve of a schedule a chain approximates; a log y axis for Caffe's own policies alone, linear when a chain is
    drawn (its tolerance is a fraction of base_lr: on a log axis its last small steps would look like cliffs)."""
    plt = pyplot()

    out = Path(out)
    many = len(curves) > 7          # the legend goes beside the plot, not over the curves
    fig, ax = plt.subplots(figsize=(11.5 if many else 8.5, 4.8), dpi=110)
    log = not ideal and all((lrs > 0).all() for _, lrs in curves.values())
    try:
        for i, (label, (its, lrs)) in enumerate(curves.items()):
            colour = plt.colormaps["tab10"](i % 10)
            marks = {"marker": "os^"[i // 10 - 1], "markevery": max(1, len(its) // 12), "markersize": 4} \
                if i >= 10 else {}         # past ten curves the colours repeat: markers tell them apart
            ax.plot(its, lrs, label=label, linewidth=1.5, color=colour, **marks)
            if ideal and label in ideal:
                its2, lrs2 = ideal[label]
                ax.plot(its2, lrs2, linestyle="--", linewidth=1.0, color=colour, alpha=0.8)
        if ideal:
            ax.plot([], [], linestyle="--", color="grey", label="ideal curve (dashed)")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("learning rate")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if many:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
            fig.tight_layout()
        else:
            ax.legend(fontsize=7)
    except BaseException:
        plt.close(fig)
        raise
    return save_png(fig, out)


STUDY_FIGURES = (  # key, Optuna's matplotlib function
    ("history", "plot_optimization_history"), ("intermediate", "plot_intermediate_values"),
    ("parallel", "plot_parallel_coordinate"), ("importance", "plot_param_importances"),
)


def study_figures(sweep_dir: Path, name: str) -> dict[str, bytes]:
    """Optuna's own matplotlib views of the sweep's study: optimisation history, intermediate values (the pruned
    runs visible), parallel coordinates, parameter importances. A view Optuna cannot draw yet (too few finished
    trials, one parameter) is left out."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from ..sweep.strategies import optuna_or_error

    optuna = optuna_or_error()
    import optuna.visualization.matplotlib as views

    study = optuna.load_study(study_name=name, storage=study_storage(sweep_dir))
    out = {}
    for key, fn in STUDY_FIGURES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
            try:
                ax = getattr(views, fn)(study)
            except (ValueError, RuntimeError, ZeroDivisionError, KeyError, IndexError):
                continue
        first = ax.flat[0] if hasattr(ax, "flat") else ax
        fig = first.figure
        fig.set_size_inches(8, 4.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tight layout not applied": the tight bounding box below still holds
            fig.tight_layout()
        out[key] = png_bytes(fig, outside=True)
    return out
