"""The tune's own pictures, drawn from what its stages stored (the search's and the final's sweep folders, the
decisions in ``tune.json``), for its front page:

* **trials**: every search trial at its base_lr (log) and search-length score, a colour per schedule, the pruned
  ones marked where they were cut;
* **confirm**: each candidate's fresh-seed values beside its search score (selected for being high);
* **final**: the winner's test top-1 and train loss against iterations at the full length, beside the search-length
  run of the same configuration;
* **anytime**: the search's best score so far against the compute it had spent, with its compute budget;
* **lr**: the lr the winner's solver gave at each iteration (as caffe printed it).

Each returns PNG bytes, or None when its data is not there yet (the page is rewritten after every stage).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..logs import TOP1, parse_log
from ..plotting import png_bytes, pyplot

__all__ = ["trials_figure", "confirm_figure", "final_figure", "anytime_figure", "lr_figure"]


def _colours(names: list[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(sorted(set(names)))}


def trials_figure(rows: list, metric: str, search_iters: int) -> bytes | None:
    """Search trials: base_lr x score, a colour per schedule; pruned ones as crosses at their last value."""
    pts = [(r.axes.get("base_lr"), str(r.axes.get("lr_policy")), r["best_top1"], r.status, r["last_iter"])
           for r in rows if r.axes.get("base_lr") and r["best_top1"] is not None]
    if not pts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colour = _colours([p[1] for p in pts])
    for name in sorted(colour):
        done = [(x, y) for x, s, y, st, _ in pts if s == name and st != "pruned"]
        cut = [(x, y, at) for x, s, y, st, at in pts if s == name and st == "pruned"]
        if done:
            ax.scatter(*zip(*done), color=colour[name], label=name, s=36, zorder=3)
        if cut:
            ax.scatter([c[0] for c in cut], [c[1] for c in cut], color=colour[name], marker="x", s=36, zorder=3,
                       label=None if done else name)
            for x, y, at in cut:        # where it was cut
                if at:
                    ax.annotate(f"@{at}", (x, y), textcoords="offset points", xytext=(4, -8), fontsize=6,
                                color=colour[name])
    ax.scatter([], [], color="grey", marker="x", label="pruned @ the iteration of the cut (its best before it)")
    ax.set_xscale("log")
    ax.set_xlabel("base_lr")
    ax.set_ylabel(f"best {metric} in the search run ({search_iters} iterations)")
    ax.set_title(f"the search: {len(pts)} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png_bytes(fig, outside=False)


def confirm_figure(candidates: list[dict[str, Any]], values: dict[str, dict[Any, float]], metric: str,
                   iters: int, search_iters: int | None = None) -> bytes | None:
    """Each candidate's fresh-seed values (dots, their mean a bar: runs of ``iters``) beside its search score (a
    hollow diamond: a run of ``search_iters``, the same length when None)."""
    names = [c["name"] for c in candidates if values.get(c["name"])]
    if not names:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.6 * len(names)))
    by_name = {c["name"]: c for c in candidates}
    for i, name in enumerate(names):
        fresh = [float(v) for v in values[name].values()]
        ax.scatter(fresh, [i] * len(fresh), color="tab:blue", s=40, zorder=3,
                   label=f"fresh seeds, {iters} iterations" if i == 0 else None)
        ax.plot([sum(fresh) / len(fresh)] * 2, [i - 0.25, i + 0.25], color="tab:blue", lw=2)
        if by_name[name].get("value") is not None:
            ax.scatter([by_name[name]["value"]], [i], facecolors="none", edgecolors="tab:orange", marker="D", s=46,
                       zorder=3, label=f"its search run, {search_iters or iters} iterations (chosen for scoring "
                                       "high)" if i == 0 else None)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel(f"best {metric} of a run")
    ax.set_title("the confirm stage: the candidates again, with fresh seeds")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="best")
    return png_bytes(fig, outside=False)


def _series(log: Path, table: str, column: str) -> list[tuple[float, float]]:
    if not log.is_file():
        return []
    curves = parse_log(log).resolved()
    return [(it, v) for it, v in getattr(curves, table).series(column) if v is not None and math.isfinite(v)]


def final_figure(final_log: Path, search_log: Path | None, metric: str) -> bytes | None:
    """The winner at the full length (test top-1 and train loss) beside its search-length run."""
    top1 = _series(final_log, "test", TOP1)
    if not top1:
        return None
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(*zip(*top1), color="tab:blue", marker="o", ms=3, label="final run (full length)")
    short = _series(search_log, "test", TOP1) if search_log else []
    if short:
        a.plot(*zip(*short), color="tab:orange", ls="--", marker="o", ms=3, label="its search run (search length)")
    a.set_xlabel("iteration")
    a.set_ylabel(f"test {metric}")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    loss = _series(final_log, "train", "loss")
    if loss:
        b.plot(*zip(*loss), color="tab:blue", lw=1, label="final run")
    short_loss = _series(search_log, "train", "loss") if search_log else []
    if short_loss:
        b.plot(*zip(*short_loss), color="tab:orange", lw=1, ls="--", label="search run")
    b.set_xlabel("iteration")
    b.set_ylabel("train loss")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.suptitle("the winner's curves")
    return png_bytes(fig, outside=False)


def anytime_figure(rows: list, budget_s: float | None, metric: str, maximize: bool = True) -> bytes | None:
    """The search's best score so far against its compute (the runs' seconds, in the order they ended)."""
    ended = sorted((r for r in rows if r["ended_at"] and r["wall_s"]), key=lambda r: r["ended_at"])
    if not ended:
        return None
    xs, ys, spent, best = [], [], 0.0, None
    for r in ended:
        spent += float(r["wall_s"])
        v = r["best_top1"]
        if v is not None and r.status != "pruned" and (best is None or (v > best if maximize else v < best)):
            best = v
        if best is not None:
            xs.append(spent)
            ys.append(best)
    if not xs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.step(xs, ys, where="post", color="tab:blue", label="best so far")
    if budget_s:
        ax.axvline(budget_s, color="tab:red", ls="--", label=f"the search's compute budget ({budget_s:.0f} s)")
    ax.set_xlabel("compute spent by the search's runs (slot-seconds)")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title("the search against its budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig, outside=False)


def lr_figure(log: Path, label: str) -> bytes | None:
    """The lr the winner's solver gave at each iteration, as caffe printed it."""
    lr = _series(log, "train", "LearningRate")
    if not lr:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.plot(*zip(*lr), color="tab:green")
    ax.set_xlabel("iteration")
    ax.set_ylabel("lr")
    ax.set_title(f"the winner's lr: {label}")
    ax.grid(alpha=0.3)
    return png_bytes(fig, outside=False)
