"""The report files: ``report.html`` (self-contained: figures embedded as base64 PNG, opens offline),
``report.md`` (figures beside it in ``report/``) and ``summary.csv``, written by :func:`write_report` from what is
on disk, so the report can be rebuilt at any time, also while the sweep runs."""
from __future__ import annotations

import base64
import csv
import html
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..logs.curves import TOP1
from .analysis import (RunReport, axis_summary, diagnosis_text, heads_text, load_runs, rank, table_rows, title,
                       why_lost, winner_sentence)
from .figures import heatmap_figure, overlay_figure, run_figure

__all__ = ["write_report", "render_html", "render_markdown", "write_csv"]


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
                run_figs: dict[str, bytes | None], axes: list[str] | None = None,
                details: dict[str, list[str]] | None = None) -> str:
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
                   f"<td>{_duration(v.get('wall_s'))}</td><td class='l'>{e(diagnosis_text(r))}</td></tr>")
    out.append("</table><h2>Diagnosis per run</h2>")
    for i, r in enumerate(ranked, 1):
        out.append(f"<details{' open' if i <= 3 else ''}><summary><b>{i}. {e(r.variant)}</b> "
                   f"&mdash; <span class='{e(r.status)}'>{e(r.status)}</span>"
                   f"{(': ' + e(r.reason)) if r.reason else ''}</summary><ul>"
                   + (f"<li><b>Why it lost</b>: {e(why_lost(r, ranked[0]))}</li>" if i > 1 else ""))
        out += [f"<li>{e(line)}</li>" for line in (details or {}).get(r.variant, [])]
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
                    axes: list[str] | None = None, details: dict[str, list[str]] | None = None) -> str:
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
                     f"{_duration(v.get('wall_s'))} | {diagnosis_text(r)} |")
    lines += ["", "## Diagnosis per run", ""]
    for i, r in enumerate(ranked, 1):
        lines.append(f"### {i}. {r.variant} ({r.status})" + (f": {r.reason}" if r.reason else ""))
        if i > 1:
            lines.append(f"- **Why it lost**: {why_lost(r, ranked[0])}")
        lines += [f"- {line}" for line in (details or {}).get(r.variant, [])]
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
    head = title(meta, sweep_dir)
    heads = (meta.get("net") or {}).get("heads") or []
    details = {r.variant: [t] for r in runs if (t := heads_text(r, heads))}
    figs = {"overlay": overlay_figure(runs, meta.get("metric") or TOP1), "heatmap": heatmap_figure(runs)}
    run_figs = {r.variant: run_figure(r, sweep_dir / r.variant / "curves.png") for r in runs}
    fig_dir = sweep_dir / "report"
    fig_dir.mkdir(exist_ok=True)
    fig_files = {}
    for key, png in figs.items():
        if png:
            (fig_dir / f"{key}.png").write_bytes(png)
            fig_files[key] = f"report/{key}.png"
    paths = {"html": sweep_dir / "report.html", "md": sweep_dir / "report.md", "csv": sweep_dir / "summary.csv"}
    paths["html"].write_text(render_html(head, sentence, ranked, figs, run_figs, axes, details), encoding="utf-8")
    paths["md"].write_text(render_markdown(head, sentence, ranked, fig_files, axes, details), encoding="utf-8")
    write_csv(table_rows(ranked), paths["csv"])
    return paths
