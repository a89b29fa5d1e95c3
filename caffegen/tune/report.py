"""The tune's own report: ``report.html`` and ``report.md`` in the tune folder, rewritten after every stage: the plan
(each stage's estimated time beside the repeated grid's), each stage's decision with its numbers, the bill (what each
stage spent, and the fraction of the repeated grid), and links to each stage's sweep report and the evaluation."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from ..errors import CaffegenError
from ..layout import (REPORT_FIGURES, REPORT_HTML, REPORT_MD, SOLVER, SWEEP_DB, TENSORBOARD, TRAIN_LOG, TRAIN_VAL,
                      TUNE_SPECS, study_storage)
from ..prototxt.options import variant_name
from ..paths import write_atomic
from .budget import duration
from .decisions import decision_of
from .state import TuneState

__all__ = ["write_tune_report", "bill_of", "headline_lines", "winner_run"]


SWEEP_STAGES = ("search", "confirm", "final")
FULL_LENGTH = ("retrain", "extend", "confirm", "grid", "scan")   # the final's "how": the winner has a full-length run


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


def winner_run(folder: Path, state: TuneState) -> Path | None:
    """The run folder that holds the answer to use (its solver, train_val, snapshots): the final run, the extended
    search run, the winner's best confirm run at the full length, or its first seed in the repeated grid."""
    confirm = (state.stages.get("confirm") or {}).get("decision")
    if not confirm:
        return None
    winner = confirm["winner"]
    how = ((state.stages.get("final") or {}).get("decision") or {}).get("how")
    name = variant_name(winner["point"])
    if how == "retrain":
        found = [folder / "final" / name]
    elif how == "extend":
        found = [folder / "search" / winner["runs"][0]]
    elif how == "confirm":
        values = confirm["values"].get(winner["name"]) or {}
        sign = 1.0 if winner.get("maximize", True) else -1.0
        seed = max(values, key=lambda k: sign * values[k]) if values else 1
        found = [folder / "confirm" / f"seed{seed}" / f"{name}_seed{seed}"]
    else:       # the grid, or no final run: the search's own
        found = sorted((folder / "search").glob(f"{name}*")) + [folder / "search" / r for r in winner.get("runs", [])]
    return next((d for d in found if (d / SOLVER).is_file()), None)


def _solver_terms(run: Path, policy: str, iters: Any) -> str:
    """The winner's schedule in Caffe's terms, from its solver.prototxt (a chained schedule: where its segments'
    solvers are)."""
    from ..prototxt.chains import chained
    from ..prototxt.validate import parse_text

    solver = parse_text((run / SOLVER).read_text(encoding="utf-8"), "solver", str(run / SOLVER))
    if chained(policy):
        return (f'base_lr {solver.base_lr:g}, schedule "{policy}" for {iters} iterations: a chain of Caffe\'s own '
                f"policies, one solver per segment in {run.name}/segments/ (caffegen solvers writes them for you)")
    params = [f"{k} {getattr(solver, k):g}" for k in ("gamma", "power") if solver.HasField(k)]
    if solver.HasField("stepsize"):
        params.append(f"stepsize {solver.stepsize}")
    if solver.stepvalue:
        params.append("stepvalue " + ",".join(map(str, solver.stepvalue)))
    return (f'base_lr {solver.base_lr:g}, lr_policy "{solver.lr_policy}"' + (f" ({', '.join(params)})" if params else "")
            + f", max_iter {solver.max_iter}")


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion ``p`` measured on ``n`` images."""
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, mid - half), min(1.0, mid + half)


def headline_lines(folder: Path, state: TuneState) -> list[str]:
    """What a practitioner acts on, first on the page and last on the terminal: the schedule to use in Caffe's terms,
    its full-length score with its interval, how sure, and where its files are (every number says its length and
    seeds)."""
    from ..logs import TOP1, parse_log

    confirm = (state.stages.get("confirm") or {}).get("decision")
    if not confirm:
        return ["in progress: the answer comes after the confirm stage"]
    plan = state.plan or {}
    winner, tied = confirm["winner"], confirm.get("tied") or []
    run = winner_run(folder, state)
    policy = str(winner["point"].get("lr_policy", ""))
    lines = [f"use {_solver_terms(run, policy, plan.get('iters', '?'))}" if run else f"use {winner['name']}"]
    tests = [(it, v) for it, v in parse_log(run / TRAIN_LOG).resolved().test.series(TOP1)
             if v is not None and math.isfinite(v)] if run and (run / TRAIN_LOG).is_file() else []
    how = ((state.stages.get("final") or {}).get("decision") or {}).get("how")
    if tests and how in FULL_LENGTH:
        it, best = max(tests, key=lambda t: (t[1], -t[0]))
        ev = ((state.stages.get("look") or {}).get("decision") or {}).get("evaluation") or {}
        n = ev.get("images")
        interval = f" (95% interval {_wilson(best, n)[0]:.3f}-{_wilson(best, n)[1]:.3f} on {n} val images)" if n else ""
        lines.append(f"its full-length run ({plan.get('iters', '?')} iterations, one run): best top-1 {best:.4f} at "
                     f"iteration {it}{interval}")
    seeds = winner.get("seeds") or 0
    length = "the full length" if plan.get("mode") == "grid" or plan.get("confirm_full") else \
        f"the search length ({plan.get('search_iters', '?')} iterations)"
    if plan.get("mode") == "scan" and seeds == 1:
        lines.append(f"how sure: the best of {len(confirm.get('values') or {})} schedules at the rate scan's base_lr "
                     f"{winner['point']['base_lr']:g}, one fresh seed each at the full length (no repeats: nothing "
                     "to estimate the seed noise from; a budget the repeated grid fits runs every configuration "
                     "with 3 seeds)")
    elif tied:
        lines.append(f"how sure: as good as {', '.join(tied)} at this noise ({seeds} seed{'s' * (seeds != 1)} each at "
                     f"{length}); more seeds or val images would separate them")
    elif seeds:
        lines.append(f"how sure: best of the candidates over {seeds} fresh seed{'s' * (seeds != 1)} at {length}: "
                     f"mean {winner['mean']:.4f} ({confirm.get('method', '')})")
    else:
        lines.append(f"how sure: the search's best at {length} (no fresh seed: the confirm stage did not fit)")
    if run:
        files = [str((run / f).relative_to(folder)) for f in (SOLVER, TRAIN_VAL) if (run / f).is_file()]
        try:
            from ..run.folder import find_snapshot

            files.append(str(find_snapshot(run, "best")[1].relative_to(folder)))
        except CaffegenError:
            pass
        ev = ((state.stages.get("look") or {}).get("decision") or {}).get("evaluation") or {}
        if ev.get("index") and Path(ev["index"]).resolve().is_relative_to(folder.resolve()):
            files.append(str(Path(ev["index"]).resolve().relative_to(folder.resolve())))
        lines.append("files: " + ", ".join(files))
    return lines


def _figures(folder: Path, state: TuneState) -> list[tuple[str, str]]:
    """The page's pictures, drawn from what the stages stored, written under ``report/``: (caption, relative path)."""
    from ..logs.curves import metric_label
    from ..sweep.store import read_sweep
    from . import figures

    plan = state.plan or {}
    out: list[tuple[str, str]] = []
    search_dir = folder / "search"
    rows = read_sweep(search_dir)[0] if (search_dir / SWEEP_DB).is_file() else []
    search = (state.stages.get("search") or {}).get("decision") or {}
    confirm = (state.stages.get("confirm") or {}).get("decision")
    cands = search.get("candidates") or []
    metric = metric_label(cands[0]["metric"]) if cands else "top-1"
    run = winner_run(folder, state)
    how = ((state.stages.get("final") or {}).get("decision") or {}).get("how")
    search_run = (search_dir / confirm["winner"]["runs"][0]) if confirm and confirm["winner"].get("runs") else None
    scan = plan.get("mode") == "scan"
    if scan and confirm:     # the confirm's candidates: the schedules at the scan's rate (the scanned ones scored)
        scored = {c["name"]: c["value"] for c in cands}
        cands = [{"name": n, "value": scored.get(n)} for n in confirm["values"]]
    drawn = {
        "trials": ("the rate scan's runs over base_lr x schedule, at the full length" if scan else
                   "the search's trials over base_lr x schedule (crosses: pruned)",
                   lambda: figures.trials_figure(rows, metric, plan.get("search_iters", 0))),
        "confirm": ("the schedules at the scan's rate: fresh-seed values beside the scan's own runs" if scan else
                    "the candidates' fresh-seed values beside their search scores",
                    lambda: figures.confirm_figure(cands, confirm["values"], metric, plan.get(
                        "iters" if plan.get("confirm_full") else "search_iters", 0), plan.get("search_iters"))
                    if confirm and plan.get("mode") != "grid" else None),
        "final": ("the winner at the full length beside its search-length run",
                  lambda: figures.final_figure(run / TRAIN_LOG, search_run / TRAIN_LOG if search_run and
                                               search_run != run else None, metric)
                  if run and how in FULL_LENGTH else None),
        "anytime": ("the search's best so far against its compute budget",
                    lambda: figures.anytime_figure(rows, (state.stages.get("search") or {}).get("seconds"), metric)),
        "lr": ("the lr the winner's solver gives at each iteration",
               lambda: figures.lr_figure(run / TRAIN_LOG, confirm["winner"]["name"]) if run and confirm else None),
    }
    for name, (caption, draw) in drawn.items():
        png = draw()
        if png:
            path = write_atomic(folder / REPORT_FIGURES / f"tune-{name}.png", png)
            out.append((caption, str(path.relative_to(folder))))
    return out


def _answer_html(line: str) -> str:
    """A headline line as HTML: the files line as links."""
    if line.startswith("files: "):
        return "files: " + ", ".join(f"<a href='{html.escape(f)}'>{html.escape(f)}</a>" for f in line[7:].split(", "))
    return f"<b>{html.escape(line)}</b>"


def write_tune_report(folder: Path, state: TuneState, bill: list[dict[str, Any]] | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` of a tune folder (from the same rows); return the HTML's path."""
    folder = Path(folder)
    bill = bill if bill is not None else bill_of(state)
    plan = state.plan or {}
    confirm = (state.stages.get("confirm") or {}).get("decision")
    headline = confirm["headline"] if confirm else "in progress"
    answer = headline_lines(folder, state)
    pictures = _figures(folder, state)
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
    md = [f"# caffegen tune: {folder.name}", "", *(f"**{line}**  " for line in answer), "", f"Verdict: {headline}", "",
          *(f"![{caption}]({path})" for caption, path in pictures), "", "## Plan", "", summary, "",
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
            "th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}"
            "img{max-width:100%}figure{margin:1em 0}</style></head><body>"
            f"<h1>caffegen tune: {e(folder.name)}</h1><p>" + "<br>".join(_answer_html(x) for x in answer)
            + f"</p><p>Verdict: {e(headline)}</p>"
            + "".join(f"<figure><img src='{e(p)}' alt='{e(c)}'><figcaption>{e(c)}</figcaption></figure>"
                      for c, p in pictures)
            + f"<h2>Plan</h2><p>{e(summary)}</p>"
            f"{table(['stage', 'estimated', 'what'], plan_rows)}<h2>Stages</h2>"
            f"{table(['stage', 'status', 'wall', 'compute', 'of the repeated grid', 'decision'], stage_rows)}"
            "<h2>Links</h2><ul>" + "".join(f"<li>{e(w)}: <a href='{e(p)}'>{e(p)}</a></li>" for w, p in links)
            + "".join(f"<li><code>{e(c)}</code></li>" for c in commands) + "</ul></body></html>\n")
    return write_atomic(folder / REPORT_HTML, page)
