"""The verdict of a sweep, from its store and logs: rank the runs, name the winner and its margin, summarise each
axis, and say why each other run lost. Pure functions over :class:`RunReport` (except :func:`load_runs`, which
reads the sweep folder)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..logs import parse_log
from ..sweep.store import open_store
from .diagnose import Finding, diagnose

__all__ = ["RunReport", "load_runs", "rank", "winner_sentence", "axis_summary", "why_lost", "table_rows",
           "diagnosis_text", "heads_text", "title"]


@dataclass
class RunReport:
    variant: str
    axes: dict[str, Any]
    status: str
    reason: str
    values: dict[str, Any]
    curves: Any = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def best_top1(self) -> float | None:
        return self.values.get("best_top1")


def rank(runs: list[RunReport]) -> list[RunReport]:
    """Best top-1 first; runs without a test result last; ties broken by lower final loss, then name."""
    def key(r: RunReport):
        top1 = r.best_top1
        loss = r.values.get("final_loss")
        return (top1 is None, -(top1 or 0.0), loss if loss is not None else math.inf, r.variant)

    return sorted(runs, key=key)


def winner_sentence(ranked: list[RunReport]) -> str:
    """One sentence: who won, with what, and by how much over the runner-up."""
    scored = [r for r in ranked if r.best_top1 is not None]
    if not scored:
        return "No run produced a test accuracy, so there is no winner: see the diagnoses below."
    w = scored[0]
    what = ", ".join(f"{k}={v}" for k, v in w.axes.items())
    head = (f"{w.variant} ({what}) won with best test top-1 {w.best_top1:.3f} at iteration "
            f"{w.values.get('best_iter')}")
    if len(scored) == 1:
        return head + "; it is the only run with a test result."
    r = scored[1]
    margin = w.best_top1 - r.best_top1
    if margin == 0:
        return head + f", tied with {r.variant} ({r.best_top1:.3f}); the lower final loss ranks it first."
    return head + f", {margin:.3f} ahead of the runner-up {r.variant} ({r.best_top1:.3f})."


def axis_summary(runs: list[RunReport]) -> list[str]:
    """Per grid axis, which value did best and worst on average (mean best top-1 over the other axes)."""
    lines = []
    axes = list(dict.fromkeys(k for r in runs for k in r.axes))
    for axis in axes:
        by: dict[Any, list[float]] = {}
        for r in runs:
            if axis in r.axes:
                by.setdefault(r.axes[axis], []).append(r.best_top1 if r.best_top1 is not None else 0.0)
        if len(by) < 2:
            continue
        means = sorted(((sum(v) / len(v), k) for k, v in by.items()), key=lambda t: -t[0])
        parts = ", ".join(f"{_axis_value(k)} {m:.3f}" for m, k in means)
        lines.append(f"{axis}: mean best top-1 {parts} (best {_axis_value(means[0][1])}, "
                     f"worst {_axis_value(means[-1][1])}).")
    return lines


def _axis_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


PEAK_DROP = 0.03  # a final top-1 this far below the run's best counts as "fell back"


def why_lost(r: RunReport, winner: RunReport) -> str:
    """One line: how far behind the winner a run finished, and the visible reason."""
    if r is winner:
        return "winner"
    if r.status in ("diverged", "failed"):
        return f"{r.status}: {r.reason}" if r.reason else r.status
    best, top = r.best_top1, winner.best_top1
    if best is None or top is None:
        return "no test result"
    bits = [f"{top - best:.3f} behind the winner" if top > best else "tied with the winner on top-1"]
    final, best_iter, last = r.values.get("final_top1"), r.values.get("best_iter"), r.values.get("last_iter")
    if final is not None and best - final >= PEAK_DROP and best_iter is not None and last and best_iter < last:
        bits.append(f"peaked at iteration {best_iter} ({best:.3f}) and fell back to {final:.3f}: "
                    "the lr stayed too high late in the run (lower base_lr, or a policy that decays more)")
    wl, rl = winner.values.get("final_loss"), r.values.get("final_loss")
    if wl is not None and rl is not None and rl > 1.25 * wl:
        bits.append(f"final train loss {rl:.3g} vs the winner's {wl:.3g}: it fit the data more slowly")
    codes = {f.code for f in r.findings}
    if "still-improving" in codes:
        bits.append("still improving when it stopped")
    if "overfitting" in codes:
        bits.append("overfitting")
    if "stalled" in codes:
        bits.append("stalled")
    return "; ".join(bits)


def load_runs(sweep_dir: Path) -> tuple[list[RunReport], dict]:
    if not (sweep_dir / "sweep.db").exists():
        raise InputError(f"{sweep_dir}: no sweep.db here (not a sweep folder)")
    store = open_store(sweep_dir, readonly=True)
    try:
        rows = store.all()
        meta = store.meta("spec") or {}
    finally:
        store.close()
    runs = []
    for row in rows:
        log = sweep_dir / row.variant / "train.log"
        curves = parse_log(log) if log.exists() else None
        findings = diagnose(curves, max_iter=row["max_iter"], top1=meta.get("metric")) if curves is not None else []
        runs.append(RunReport(row.variant, row.axes, row.status, row["reason"] or "", row.values, curves, findings))
    return runs, meta


def heads_text(r: RunReport, heads: list[str]) -> str | None:
    """Best test value of every head of a several-headed net (GoogLeNet's three), the ranked one last."""
    if len(heads) < 2 or r.curves is None:
        return None
    parts = []
    for name in heads:
        _, b = r.curves.test.final_best(name)
        parts.append(f"{name} {b[0]:.3f}" if b else f"{name} -")
    return "best per head: " + ", ".join(parts) + f" (ranked by {heads[-1]})"


def title(meta: dict, sweep_dir: Path) -> str:
    """The report's title line: the sweep, and the net it tuned."""
    net = meta.get("net") or {}
    what = f" (net {net['name']}: {net['file']})" if net.get("kind") == "user" else ""
    return f"caffegen sweep report: {meta.get('name', sweep_dir.name)}{what}"


def diagnosis_text(r: RunReport) -> str:
    return "; ".join(f.title for f in r.findings) or "-"


def table_rows(ranked: list[RunReport]) -> list[dict[str, Any]]:
    rows = []
    winner = ranked[0] if ranked else None
    for i, r in enumerate(ranked, 1):
        v = r.values
        rows.append({"rank": i, "variant": r.variant, **{k: r.axes[k] for k in r.axes}, "status": r.status,
                     "best_top1": v.get("best_top1"), "best_top5": v.get("best_top5"), "best_iter": v.get("best_iter"),
                     "final_top1": v.get("final_top1"), "final_top5": v.get("final_top5"),
                     "final_loss": v.get("final_loss"), "wall_s": v.get("wall_s"),
                     "diagnosis": diagnosis_text(r), "why": why_lost(r, winner), "reason": r.reason})
    return rows
