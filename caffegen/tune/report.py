"""The tune's own report: ``report.html`` and ``report.md`` in the tune folder, rewritten after every stage: the plan
(each stage's estimated time beside the repeated grid's), each stage's decision with its numbers, the bill (what each
stage spent, and the fraction of the repeated grid), and links to each stage's sweep report and the evaluation."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..layout import REPORT_HTML, REPORT_MD, TENSORBOARD, TUNE_SPECS, study_storage
from ..paths import write_atomic
from .budget import duration
from .decisions import decision_of
from .state import TuneState

__all__ = ["write_tune_report", "bill_of"]


SWEEP_STAGES = ("search", "confirm", "final")


def grid_compute_s(plan: dict[str, Any]) -> float:
    """The repeated grid's compute (slot-seconds) as the plan estimated it: its runs x one full-length run."""
    if not plan:
        return 0.0
    sp = plan["speed"]
    full = sp["start_s"] + plan["iters"] * sp["iter_s"] + (plan["iters"] // max(1, plan["test_interval"]) + 1) * \
        sp["test_s"]
    return plan["grid_runs"] * full


def bill_of(state: TuneState) -> list[dict[str, Any]]:
    """What each stage spent: wall seconds and compute, everything counted (slot-seconds: its runs' wall, and its own
    wall beyond what its runs covered: a sweep's start and end, a probe, the look), and the fraction of the
    repeated grid's compute (the plan's estimate of it)."""
    plan = state.plan or {}
    grid = grid_compute_s(plan)
    slots = (plan.get("speed") or {}).get("slots") or 1
    out = []
    for name, s in state.stages.items():
        runs = float(s.get("compute_s", 0.0))
        spent = float(s.get("spent_s", 0.0))
        # a sweep stage: its runs in slots, plus its own wall beyond what they covered; a probe or the look: one
        # slot for its wall (what the plan and the replay count)
        compute = runs + max(0.0, spent - runs / slots) if name in SWEEP_STAGES else max(runs, spent)
        out.append({"stage": name, "status": s.get("status"), "spent_s": spent, "compute_s": compute,
                    "of_grid": compute / grid if grid else None})
    return out


def _decision(name: str, d: dict[str, Any] | None) -> str:
    decision = decision_of(name, d)
    return decision.describe() if decision else ""


def _links(folder: Path, state: TuneState) -> list[tuple[str, str]]:
    """(what, relative path or command) of everything the tune made."""
    out = []
    for name, p in [("search", folder / "search" / REPORT_HTML),
                    *((f"confirm {p.parent.name}", p) for p in sorted((folder / "confirm").glob(f"seed*/{REPORT_HTML}"))),
                    ("final", folder / "final" / REPORT_HTML)]:
        if p.exists():
            out.append((f"{name} report", str(p.relative_to(folder))))
    ev = ((state.stages.get("look") or {}).get("decision") or {}).get("evaluation")
    if ev:
        index = Path(ev["index"])
        rel = index.resolve().relative_to(folder.resolve()) if index.resolve().is_relative_to(folder.resolve()) \
            else index
        out.append(("the winner per class (evaluate)", str(rel)))
    return out


def write_tune_report(folder: Path, state: TuneState, bill: list[dict[str, Any]] | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` of a tune folder (from the same rows); return the HTML's path."""
    folder = Path(folder)
    bill = bill if bill is not None else bill_of(state)
    plan = state.plan or {}
    confirm = (state.stages.get("confirm") or {}).get("decision")
    headline = confirm["headline"] if confirm else "in progress"
    summary = (f"Budget {plan['budget']['text']} = {duration(plan['wall_s'])} here; the repeated grid over the same "
               f"space: {plan['grid_runs']} runs of {plan['iters']} iterations (base_lr a half-decade apart x every "
               f"schedule x 3 seeds), {duration(grid_compute_s(plan))} of compute.") if plan else ""
    if plan.get("trains_at"):
        summary += f" Trains at {plan['trains_at']}."
    plan_rows = [[s["name"], duration(s["seconds"]), s["what"]] for s in plan.get("stages", [])]
    stage_rows = [[b["stage"], b["status"] or "", duration(b["spent_s"]), duration(b["compute_s"]),
                   f"{100 * b['of_grid']:.1f}%" if b["of_grid"] is not None else "-",
                   _decision(b["stage"], (state.stages.get(b["stage"]) or {}).get("decision"))] for b in bill]
    links = _links(folder, state)
    commands = [f"tensorboard --logdir {folder / TENSORBOARD}", f"optuna-dashboard {study_storage(folder / 'search')}",
                f"caffegen sweep {folder / TUNE_SPECS}/<stage>.toml   # rerun or tweak one stage"]
    md = [f"# caffegen tune: {folder.name}", "", f"**{headline}**", "", "## Plan", "", summary, "",
          "| stage | estimated | what |", "|---|---|---|", *(f"| {' | '.join(r)} |" for r in plan_rows), "",
          "## Stages", "", "| stage | status | wall | compute | of the repeated grid | decision |",
          "|---|---|---|---|---|---|", *(f"| {' | '.join(r)} |" for r in stage_rows), "", "## Links", "",
          *(f"- {what}: [{path}]({path})" for what, path in links), *(f"- `{c}`" for c in commands), ""]
    write_atomic(folder / REPORT_MD, "\n".join(md) + "\n")
    e = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")

    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>caffegen tune: {e(folder.name)}</title>"
            "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}"
            "th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}</style></head><body>"
            f"<h1>caffegen tune: {e(folder.name)}</h1><p><b>{e(headline)}</b></p><h2>Plan</h2><p>{e(summary)}</p>"
            f"{table(['stage', 'estimated', 'what'], plan_rows)}<h2>Stages</h2>"
            f"{table(['stage', 'status', 'wall', 'compute', 'of the repeated grid', 'decision'], stage_rows)}"
            "<h2>Links</h2><ul>" + "".join(f"<li>{e(w)}: <a href='{e(p)}'>{e(p)}</a></li>" for w, p in links)
            + "".join(f"<li><code>{e(c)}</code></li>" for c in commands) + "</ul></body></html>\n")
    return write_atomic(folder / REPORT_HTML, page)
