"""The report files: ``report.html`` (self-contained: figures embedded as base64 PNG, opens offline),
``report.md`` (figures beside it in ``report/``) and ``summary.csv``, written by :func:`write_report` from what is
on disk, so the report can be rebuilt at any time. While a sweep runs, ``live=True`` writes a lighter report (no
per-run figures) with a refresh header, so a browser tab follows the sweep; every file is written then renamed,
so a reader never sees half of one."""
from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..layout import CURVES_PNG, REPORT_FIGURES, REPORT_HTML, REPORT_MD, SUMMARY_CSV
from ..logs.curves import metric_label
from ..paths import write_atomic
from ..run.folder import read_eval_summary
from .analysis import (RunReport, VariantReport, Verdict, axis_summary, diagnosis_text, heads_text, load_runs,
                       ranked_variants, repeats_text, table_rows, title, verdict, why_lost)
from .figures import curves_figure, heatmap_figure, lr_figure, run_figure, study_figures

__all__ = ["write_report", "render_html", "render_markdown", "csv_text", "LIVE_REFRESH_S"]

LIVE_REFRESH_S = 15  # a live report.html asks the browser to reload every this many seconds


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


def _score(v: VariantReport) -> str:
    if v.score is None:
        return "-"
    iv = v.interval
    return f"{v.score:.3f} ({iv[0]:.3f}-{iv[1]:.3f})" if iv else f"{v.score:.3f}"


def _rank(v: VariantReport, ver: Verdict) -> str:
    """The rank as the tables show it: a variant the data cannot separate from the winner says "tied"."""
    return f"{v.label} (tied)" if v.tied and v is not ver.winner else v.label


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.done{color:#1a7f37}.diverged,.failed{color:#c62828}
.early-stopped,.timeout,.pruned{color:#a15c00}.interrupted{color:#7b1fa2}img{max-width:100%}
.win{font-size:16px;background:#eef7ee;padding:.6em 1em;border-left:4px solid #1a7f37}
.live{background:#fff8e1;padding:.4em 1em}tr.tied td{background:#f3f9f3}
details{margin:.4em 0}summary{cursor:pointer}.adv{color:#555}.small{color:#666;font-size:12px}"""

FIGURES = (  # key, heading, alt text
    ("lr", "Best top-1 by base_lr", "best test top-1 against base_lr, one line per lr_policy, 95% error bars"),
    ("top1", "Test top-1, one panel per policy", "test top-1 against iteration, small multiples by lr_policy"),
    ("loss", "Train loss, one panel per policy", "smoothed train loss against iteration, small multiples by lr_policy"),
    ("time", "Test top-1 against wall-clock time", "test top-1 against seconds, small multiples by lr_policy"),
    ("heatmap", "base_lr &times; lr_policy", "heatmap of best top-1"),
    ("history", "Search: optimisation history (Optuna)", "objective value of each trial, and the best so far"),
    ("intermediate", "Search: intermediate values (Optuna; pruned runs stop early)", "top-1 reported at each test "
                                                                                   "pass, per trial"),
    ("parallel", "Search: parallel coordinates (Optuna)", "each trial's parameters and objective"),
    ("importance", "Search: parameter importances (Optuna)", "how much each parameter explains the objective"),
)


def _run_details(r: RunReport, winner: VariantReport | None, v: VariantReport, details: list[str]) -> list[str]:
    lines = list(details)
    if winner is not None and v is not winner and r is v.runs[0]:
        lines.append(f"<b>Why it lost</b>: {html.escape(why_lost(v, winner))}")
    for f in r.findings:
        lines.append(f"<b>{html.escape(f.title)}</b>: {html.escape(f.detail)} "
                     f"<span class='adv'>&rarr; {html.escape(f.advice)}</span>")
    return lines or ["no finding"]


def _eval_line(variant: str, s: dict) -> str:
    top5 = f", top-5 {s['top5']:.4f}" if s.get("top5") is not None else ""
    ap = f", mean AP {s['mean_ap']:.3f}" if s.get("mean_ap") is not None else ""
    return f"{variant} @ iteration {s['iteration']}: top-1 {s['top1']:.4f}{top5}{ap} on {s['images']} images"


def render_html(title: str, verdict_: Verdict, ranked: list[VariantReport], figs: dict[str, bytes | None],
                run_figs: dict[str, bytes | None], axes: list[str] | None = None,
                details: dict[str, list[str]] | None = None, live: bool = False,
                evals: dict[str, dict] | None = None) -> str:
    e = html.escape
    refresh = f"<meta http-equiv='refresh' content='{LIVE_REFRESH_S}'>" if live else ""
    out = [f"<!doctype html><html><head><meta charset='utf-8'>{refresh}<title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    if live:
        out.append(f"<p class='live'>The sweep is running: this page is rewritten after each test pass and reloads "
                   f"itself every {LIVE_REFRESH_S} s. The final report replaces it when the sweep ends.</p>")
    out.append(f"<p class='win'>{e(verdict_.headline)}</p><p class='small'>Within noise: {e(verdict_.method)}; "
               "intervals are 95% (Wilson's for one run, the t-interval of the mean over repeats).</p>")
    if axes:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in axes) + "</ul>")
    if evals:
        out.append("<h2>Evaluation</h2><ul>" + "".join(
            f"<li><a href='{e(v)}/eval/index.html'>{e(_eval_line(v, s))}</a> (confusion matrix, per-class "
            "precision/recall, PR and ROC curves, the most confident mistakes)</li>" for v, s in evals.items())
            + "</ul>")
    for key, heading, alt in FIGURES:
        if figs.get(key):
            out.append(f"<h2>{heading}</h2><img alt='{alt}' src='{_b64(figs[key])}'>")
    out.append("<h2>Ranking</h2><table><tr>" + "".join(
        f"<th class='{'l' if c in ('variant', 'status', 'diagnosis', 'repeats') else ''}'>{c}</th>"
        for c in ("#", "variant", "status", "best top-1 (95% interval)", "repeats", "final top-1", "best top-5",
                  "best iter", "final loss", "wall time", "diagnosis")) + "</tr>")
    for v in ranked:
        out.append(f"<tr class='{'tied' if v.tied else ''}'><td>{e(_rank(v, verdict_))}</td><td class='l'>{e(v.name)}</td>"
                   f"<td class='l {e(v.status)}'>{e(v.status)}</td><td>{e(_score(v))}</td>"
                   f"<td class='l'>{e(repeats_text(v))}</td><td>{_fmt(v.mean_of('final_top1'))}</td>"
                   f"<td>{_fmt(v.mean_of('best_top5'))}</td><td>{_fmt(v.runs[0].values.get('best_iter'))}</td>"
                   f"<td>{_fmt(v.mean_of('final_loss'), 4)}</td>"
                   f"<td>{_duration(sum(r.values.get('wall_s') or 0 for r in v.runs) or None)}</td>"
                   f"<td class='l'>{e(diagnosis_text(v))}</td></tr>")
    out.append("</table><h2>Diagnosis per run</h2>")
    first = True
    for v in ranked:
        for r in v.runs:
            out.append(f"<details{' open' if first else ''}><summary><b>{e(v.label)}. {e(r.variant)}</b> "
                       f"&mdash; <span class='{e(r.status)}'>{e(r.status)}</span>"
                       f"{(': ' + e(r.reason)) if r.reason else ''}</summary><ul>")
            lines = _run_details(r, verdict_.winner, v, [e(d) for d in (details or {}).get(r.variant, [])])
            out += [f"<li>{line}</li>" for line in lines] + ["</ul>"]
            if run_figs.get(r.variant):
                out.append(f"<img alt='curves of {e(r.variant)}' src='{_b64(run_figs[r.variant])}'>")
            out.append("</details>")
            first = False
    out.append("</body></html>\n")
    return "".join(out)


def render_markdown(title: str, verdict_: Verdict, ranked: list[VariantReport], fig_files: dict[str, str],
                    axes: list[str] | None = None, details: dict[str, list[str]] | None = None,
                    evals: dict[str, dict] | None = None) -> str:
    lines = [f"# {title}", "", f"**{verdict_.headline}**", "", f"_Within noise: {verdict_.method}; intervals are 95%._",
             ""]
    if axes:
        lines += [f"- {line}" for line in axes] + [""]
    if evals:
        lines += ["## Evaluation", ""] + [f"- [{_eval_line(v, s)}]({v}/eval/index.html)" for v, s in evals.items()]
        lines.append("")
    for key, _, alt in FIGURES:
        if key in fig_files:
            lines += [f"![{alt}]({fig_files[key]})", ""]
    lines += ["| # | variant | status | best top-1 (95% interval) | repeats | final top-1 | best iter | final loss | "
              "wall time | diagnosis |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in ranked:
        lines.append(f"| {_rank(v, verdict_)} | {v.name} | {v.status} | {_score(v)} | {repeats_text(v)} | "
                     f"{_fmt(v.mean_of('final_top1'))} | {_fmt(v.runs[0].values.get('best_iter'))} | "
                     f"{_fmt(v.mean_of('final_loss'), 4)} | "
                     f"{_duration(sum(r.values.get('wall_s') or 0 for r in v.runs) or None)} | {diagnosis_text(v)} |")
    lines += ["", "## Diagnosis per run", ""]
    for v in ranked:
        for r in v.runs:
            lines.append(f"### {v.label}. {r.variant} ({r.status})" + (f": {r.reason}" if r.reason else ""))
            if verdict_.winner is not None and v is not verdict_.winner and r is v.runs[0]:
                lines.append(f"- **Why it lost**: {why_lost(v, verdict_.winner)}")
            lines += [f"- {d}" for d in (details or {}).get(r.variant, [])]
            for f in r.findings:
                lines.append(f"- **{f.title}**: {f.detail} → {f.advice}")
            if not r.findings:
                lines.append("- no finding")
            lines.append("")
    return "\n".join(lines)


def write_report(sweep_dir: str | Path, live: bool = False, run_figures: bool = True) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``summary.csv`` (and figures in ``report/``); return their paths.
    ``live``: the lighter report of a running sweep (no per-run figures, a refresh header); ``run_figures`` False:
    no figure of each run's own curves (a search of a hundred trials: the small multiples show them)."""
    sweep_dir = Path(sweep_dir)
    runs, record = load_runs(sweep_dir)
    if not runs:
        raise InputError(f"{sweep_dir}: the sweep has no runs yet")
    ranked = ranked_variants(runs, record)
    iterations = max((r.values.get("max_iter") or 0 for r in runs), default=0) or None
    metric, label = record.metric, metric_label(record.metric)
    ver = verdict(ranked, iterations=iterations, metric=label)
    axes = axis_summary(ranked, metric=label)
    reduced = (record.get("net") or {}).get("reduced")
    if reduced:     # a [net] crop sweep: the ranking is at a smaller input than the net's own
        axes.append("Reduced input: " + reduced.removeprefix("[net] ") + ".")
    for v in ranked:  # "healthy, nothing to change" would contradict "why it lost"
        if v is not ver.winner:
            for r in v.runs:
                r.findings = [f for f in r.findings if f.code != "healthy"]
    head = title(record, sweep_dir)
    heads = (record.get("net") or {}).get("heads") or []
    details = {r.variant: [t] for r in runs if (t := heads_text(r, heads))}
    figs = {"lr": lr_figure(ranked, label), "top1": curves_figure(runs, "top1", top1=metric),
            "loss": curves_figure(runs, "loss", top1=metric), "heatmap": heatmap_figure(ranked, label)}
    if not live:
        figs["time"] = curves_figure(runs, "top1", x="Seconds", top1=metric)
        search = record.get("search") or {}
        if search.get("sampler", "grid") != "grid" or search.get("pruner", "none") != "none":
            figs.update(study_figures(sweep_dir, record.name or sweep_dir.name))
    run_figs = {} if live or not run_figures else {r.variant: run_figure(r, sweep_dir / r.variant / CURVES_PNG)
                                                     for r in runs}
    fig_dir = sweep_dir / REPORT_FIGURES
    fig_files = {}
    for key, png in figs.items():
        if png:
            write_atomic(fig_dir / f"{key}.png", png)
            fig_files[key] = f"{REPORT_FIGURES}/{key}.png"
    paths = {"html": sweep_dir / REPORT_HTML, "md": sweep_dir / REPORT_MD, "csv": sweep_dir / SUMMARY_CSV}
    evals = {r.variant: s for r in runs if (s := read_eval_summary(sweep_dir / r.variant))}
    write_atomic(paths["html"], render_html(head, ver, ranked, figs, run_figs, axes, details, live=live,
                                            evals=evals))
    write_atomic(paths["md"], render_markdown(head, ver, ranked, fig_files, axes, details, evals=evals))
    write_atomic(paths["csv"], csv_text(table_rows(ranked, ver.winner)))
    return paths
