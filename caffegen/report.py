"""``caffegen report``: a finished (or running) sweep -> ranked, diagnosed HTML, Markdown and CSV.

Reads ``sweep.db`` for the outcome of each run and each run's ``train.log`` for its curves
(:func:`caffegen.parse.parse_log`), so the report can be rebuilt at any time from what is on disk.
The HTML is one self-contained file (figures embedded as base64 PNG) that opens offline.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

TOP1 = "accuracy_at_1"
TOP5 = "accuracy_at_5"


@dataclass
class RunReport:
    variant: str
    axes: dict[str, Any]
    status: str
    reason: str
    values: dict[str, Any]
    curves: Any = None
    findings: list = field(default_factory=list)

    @property
    def best_top1(self) -> float | None:
        return self.values.get("best_top1")


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{nd}f}"
    return str(x)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{int(s) // 60}m{int(s) % 60:02d}s" if s >= 60 else f"{s:.1f}s"


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
    from .diagnose import diagnose
    from .parse import parse_log
    from .sweep.store import open_store

    if not (sweep_dir / "sweep.db").exists():
        raise InputError(f"{sweep_dir}: no sweep.db here (not a sweep folder)")
    store = open_store(sweep_dir)
    try:
        rows = store.all()
        meta = store.meta("spec") or {}
    finally:
        store.close()
    runs = []
    for row in rows:
        log = sweep_dir / row.variant / "train.log"
        curves = parse_log(log) if log.exists() else None
        findings = diagnose(curves, max_iter=row["max_iter"]) if curves is not None else []
        runs.append(RunReport(row.variant, row.axes, row.status, row["reason"] or "", row.values, curves, findings))
    return runs, meta


# --------------------------------------------------------------------------- figures


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

    from .diagnose import metric_roles
    from .plot import ema

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
    from .plot import plot_curves

    return plot_curves(r.curves, out_png, title=r.variant).read_bytes()


# --------------------------------------------------------------------------- writers


def _diagnosis_text(r: RunReport) -> str:
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
                     "diagnosis": _diagnosis_text(r), "why": why_lost(r, winner), "reason": r.reason})
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    cols = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.done{color:#1a7f37}.diverged,.failed{color:#c62828}
.early-stopped,.timeout{color:#a15c00}.interrupted{color:#7b1fa2}img{max-width:100%}
.win{font-size:16px;background:#eef7ee;padding:.6em 1em;border-left:4px solid #1a7f37}
details{margin:.4em 0}summary{cursor:pointer}.adv{color:#555}"""


def render_html(title: str, sentence: str, ranked: list[RunReport], figs: dict[str, bytes | None],
                run_figs: dict[str, bytes | None], axes: list[str] | None = None) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
           f"</head><body><h1>{e(title)}</h1><p class='win'>{e(sentence)}</p>"]
    if axes:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in axes) + "</ul>")
    if figs.get("overlay"):
        out.append(f"<h2>Curves</h2><img alt='test top-1 and train loss of every run' src='{_b64(figs['overlay'])}'>")
    if figs.get("heatmap"):
        out.append(f"<h2>base_lr &times; lr_policy</h2><img alt='heatmap of best top-1' src='{_b64(figs['heatmap'])}'>")
    out.append("<h2>Ranking</h2><table><tr>" + "".join(
        f"<th class='{'l' if c in ('variant', 'status', 'diagnosis') else ''}'>{c}</th>"
        for c in ("#", "variant", "status", "best top-1", "best top-5", "best iter", "final top-1", "final top-5",
                  "final loss", "wall time", "diagnosis")) + "</tr>")
    for i, r in enumerate(ranked, 1):
        v = r.values
        out.append(f"<tr><td>{i}</td><td class='l'>{e(r.variant)}</td><td class='l {e(r.status)}'>{e(r.status)}</td>"
                   f"<td>{_fmt(v.get('best_top1'))}</td><td>{_fmt(v.get('best_top5'))}</td>"
                   f"<td>{_fmt(v.get('best_iter'))}</td><td>{_fmt(v.get('final_top1'))}</td>"
                   f"<td>{_fmt(v.get('final_top5'))}</td><td>{_fmt(v.get('final_loss'), 4)}</td>"
                   f"<td>{_duration(v.get('wall_s'))}</td><td class='l'>{e(_diagnosis_text(r))}</td></tr>")
    out.append("</table><h2>Diagnosis per run</h2>")
    for i, r in enumerate(ranked, 1):
        out.append(f"<details{' open' if i <= 3 else ''}><summary><b>{i}. {e(r.variant)}</b> "
                   f"&mdash; <span class='{e(r.status)}'>{e(r.status)}</span>"
                   f"{(': ' + e(r.reason)) if r.reason else ''}</summary><ul>"
                   + (f"<li><b>Why it lost</b>: {e(why_lost(r, ranked[0]))}</li>" if i > 1 else ""))
        for f in r.findings:
            out.append(f"<li><b>{e(f.title)}</b>: {e(f.detail)} <span class='adv'>&rarr; {e(f.advice)}</span></li>")
        if not r.findings:
            out.append("<li>no finding</li>")
        out.append("</ul>")
        if run_figs.get(r.variant):
            out.append(f"<img alt='curves of {e(r.variant)}' src='{_b64(run_figs[r.variant])}'>")
        out.append("</details>")
    out.append("</body></html>\n")
    return "".join(out)


def render_markdown(title: str, sentence: str, ranked: list[RunReport], fig_files: dict[str, str],
                    axes: list[str] | None = None) -> str:
    lines = [f"# {title}", "", f"**{sentence}**", ""]
    if axes:
        lines += [f"- {line}" for line in axes] + [""]
    for key, alt in (("overlay", "test top-1 and train loss of every run"), ("heatmap", "best top-1 heatmap")):
        if key in fig_files:
            lines += [f"![{alt}]({fig_files[key]})", ""]
    lines += ["| # | variant | status | best top-1 | best top-5 | best iter | final top-1 | final loss | wall time "
              "| diagnosis |", "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(ranked, 1):
        v = r.values
        lines.append(f"| {i} | {r.variant} | {r.status} | {_fmt(v.get('best_top1'))} | {_fmt(v.get('best_top5'))} | "
                     f"{_fmt(v.get('best_iter'))} | {_fmt(v.get('final_top1'))} | {_fmt(v.get('final_loss'), 4)} | "
                     f"{_duration(v.get('wall_s'))} | {_diagnosis_text(r)} |")
    lines += ["", "## Diagnosis per run", ""]
    for i, r in enumerate(ranked, 1):
        lines.append(f"### {i}. {r.variant} ({r.status})" + (f": {r.reason}" if r.reason else ""))
        if i > 1:
            lines.append(f"- **Why it lost**: {why_lost(r, ranked[0])}")
        for f in r.findings:
            lines.append(f"- **{f.title}**: {f.detail} → {f.advice}")
        if not r.findings:
            lines.append("- no finding")
        lines.append("")
    return "\n".join(lines)


def write_report(sweep_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``summary.csv`` (and figures in ``report/``); return their paths."""
    sweep_dir = Path(sweep_dir)
    runs, meta = load_runs(sweep_dir)
    if not runs:
        raise InputError(f"{sweep_dir}: the sweep has no runs yet")
    ranked = rank(runs)
    sentence = winner_sentence(ranked)
    axes = axis_summary(runs)
    for r in ranked[1:]:  # "healthy, nothing to change" would contradict "why it lost"
        r.findings = [f for f in r.findings if f.code != "healthy"]
    title = f"caffegen sweep report: {meta.get('name', sweep_dir.name)}"
    figs = {"overlay": overlay_figure(runs), "heatmap": heatmap_figure(runs)}
    run_figs = {r.variant: run_figure(r, sweep_dir / r.variant / "curves.png") for r in runs}
    fig_dir = sweep_dir / "report"
    fig_dir.mkdir(exist_ok=True)
    fig_files = {}
    for key, png in figs.items():
        if png:
            (fig_dir / f"{key}.png").write_bytes(png)
            fig_files[key] = f"report/{key}.png"
    paths = {"html": sweep_dir / "report.html", "md": sweep_dir / "report.md", "csv": sweep_dir / "summary.csv"}
    paths["html"].write_text(render_html(title, sentence, ranked, figs, run_figs, axes), encoding="utf-8")
    paths["md"].write_text(render_markdown(title, sentence, ranked, fig_files, axes), encoding="utf-8")
    write_csv(table_rows(ranked), paths["csv"])
    return paths
