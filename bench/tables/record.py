"""Record the learning-curve tables the tuner is replayed on (caffegen.tune.table): real caffe runs, resumable.

    .venv/bin/pip install -e '.[bench]'        # scikit-learn and scikit-image: the digits and the texture photos
    .venv/bin/python bench/tables/record.py [--problem digits textures demo] [--seeds 3] [--commit]

For each problem of bench/problems.py (``TABLE_PROBLEMS``), the net ``caffegen tune`` trains without a NET, on the
problem's lists, with the tune's own solver (``caffegen.tune.specs.base_tables``):

* base_lr 1e-4 .. 0.0316 at half-decade steps (6 values, 2.5 decades; the demo on to 0.316, digits and textures to 0.1: ``MORE_LRS``) x Caffe's seven policies and the chained linear,
  cosine and onecycle x seeds 0..S-1, **at both lengths the tuner trains**: the full length (4 epochs, 12 test
  passes; `caffegen tune --iters` that length) and the search's (a third of it, its schedule fitted to that length, 6 test passes); every run's whole
  curve is kept, so a prefix of a full-length run (what ASHA trains) is in the table too;
* each seed's LR range test (100 iterations, as the tune's lr-find stage).

The recording is cut into **chunks**, one schedule at one length (6 rates x the seeds: an ordinary ``caffegen sweep``
on two slots, so a stopped chunk resumes where it stopped and never records a run twice: the sweep's store). Each
finished chunk is folded into ``bench/tables/<problem>.partial.json.gz`` (with ``--commit``, committed), so a
recording outlives the machine it ran on: a rerun on another machine (a fresh checkout) skips every chunk the
partial table holds. A later session's runs are put on the first session's clock (the measure probe is run again
and the times are scaled by the ratio of the two probes' iteration times: recorded in the table's ``meta``). When
every chunk is in, the table is written to ``bench/tables/<problem>.json.gz`` (a few hundred kB) with the caffegen
version and commit that made it and the partial file is removed. A problem name that does not exist, or a partial
table from another caffegen version: one line, exit 2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT))

from problems import TABLE_PROBLEMS, epochs_iters, problem_lists  # noqa: E402

LRS = [float(f"{10 ** (e / 2):.3g}") for e in range(-8, -2)]      # 1e-4, 3.16e-4, ..., 0.0316: 2.5 decades
# Rates a problem needs above the common 2.5 decades: the demo's best runs sat at the top one (0.0316) and the tune's
# range follows the evidence upward (caffegen.tune.specs), so its table reaches 0.316 (its truth is read, not clamped);
# digits and textures to 0.1, where a search that follows its trials upward (or a ladder of higher rates) can go.
MORE_LRS = {"demo": [0.1, 0.316], "digits": [0.1], "textures": [0.1]}


def lrs_of(name: str) -> list[float]:
    return LRS + MORE_LRS.get(name, [])
EPOCHS = 4        # the full length: short runs that still separate the schedules, so a table fits a few hours
LRFIND_ITERS = 100


TABLES = HERE      # --tables: where the tables are read and written


def table_path(name: str) -> Path:
    return TABLES / f"{name}.json.gz"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def specs(name: str, work: Path, seeds: int) -> tuple[dict, dict, dict]:
    """The problem's facts and its two sweep specs (full length, search length) as TOML tables."""
    from caffegen.tune.specs import TEST_PASSES_FINAL, TEST_PASSES_SEARCH, TUNE_SCHEDULES, TuneNet, base_tables

    train, val, classes, n_val, n_train = problem_lists(name, work)
    iters = epochs_iters(n_train, EPOCHS)
    search_iters = max(10, iters // 3)      # the tune's default search length
    common = dict(data={"train_list": str(train), "val_list": str(val)}, net=TuneNet(), classes=classes, val_images=n_val,
                  run={"backend": "local", "jobs": 2})
    grid = {"base_lr": lrs_of(name), "lr_policy": list(TUNE_SCHEDULES), "repeats": seeds}
    full = {**base_tables(f"table-{name}-full", iters=iters, passes=TEST_PASSES_FINAL, **common), "grid": grid}
    short = {**base_tables(f"table-{name}-search", iters=search_iters, passes=TEST_PASSES_SEARCH, **common), "grid": grid}
    problem = {"name": name, "classes": classes, "val_images": n_val, "train_images": n_train, "iters": iters,
               "search_iters": search_iters, "metric": "accuracy_at_1", "maximize": True,
               "train_list": str(train.relative_to(work)), "val_list": str(val.relative_to(work))}
    return problem, full, short


def run_sweep(tables: dict, work: Path) -> Path:
    import tomli_w

    spec = work / f"{tables['name']}.toml"
    spec.write_text(tomli_w.dumps(tables))
    out = work / "runs" / tables["name"]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out), "--no-report"],
                          cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"record: {tables['name']}: caffegen sweep exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    print(f"  {tables['name']}: done ({time.time() - t0:.0f} s this time)", flush=True)
    return out


def lrfinds(tables: dict, work: Path, name: str, seeds: int) -> list[dict]:
    """Each seed's range test (kept in work/, so a resumed recording does not run it again)."""
    import tomli_w

    from caffegen.probes.lrfind import lr_find
    from caffegen.sweep.spec import load_spec
    from caffegen.toolchain import locate

    out = []
    for seed in range(seeds):
        done = work / "lrfind" / f"{name}-seed{seed}.json"
        if not done.exists():
            probe = {**tables, "grid": {"base_lr": [0.01]}}
            probe = {**probe, "name": f"lrfind-{name}-{seed}", "solver": {**probe["solver"], "random_seed": seed}}
            path = work / f"lrfind-{name}-{seed}.toml"
            path.write_text(tomli_w.dumps(probe))
            t0 = time.time()
            found = lr_find(load_spec(path), work / "lrfind" / f"{name}-seed{seed}", locate(), iters=LRFIND_ITERS,
                            log=lambda _: None)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps({"seed": seed, "suggested": found.suggested, "blew_up_at": found.blew_up_at,
                                        "suggestions": found.suggestions, "wall_s": round(time.time() - t0, 2)}))
        out.append(json.loads(done.read_text()))
    return out


def measured(tables: dict, work: Path, name: str) -> dict:
    """The tune's measure probe on this problem (what its plan is made from), run once and kept."""
    import dataclasses

    import tomli_w

    from caffegen.probes.timing import measure
    from caffegen.sweep.spec import load_spec
    from caffegen.toolchain import locate

    done = work / "measure" / f"{name}.json"
    if not done.exists():
        probe = {**tables, "name": f"probe-{name}", "grid": {"base_lr": [0.01]}}
        path = work / f"probe-{name}.toml"
        path.write_text(tomli_w.dumps(probe))
        t = measure(load_spec(path), work / "measure" / name, locate(), log=lambda _: None, slots=2)
        done.write_text(json.dumps(dataclasses.asdict(t)))
    return json.loads(done.read_text())


def curves_of(sweep: Path, iters: int) -> list:
    """Every finished run of a sweep folder as a table Curve."""
    from caffegen.logs import TOP1, parse_log
    from caffegen.run.status import WITH_RESULT
    from caffegen.sweep.store import read_sweep
    from caffegen.tune.table import Curve

    rows, _ = read_sweep(sweep)
    out = []
    for r in rows:
        if r.status not in WITH_RESULT and r.status != "diverged":
            raise SystemExit(f"record: {sweep.name}/{r.variant} is {r.status}: rerun to finish it")
        curves = parse_log(sweep / r.variant / "train.log").resolved()   # a chain's segments, a resumed attempt
        test = curves.test
        steps = [int(s) for s in test.column("NumIters")]
        top1 = [float("nan") if v is None else float(v) for v in test.column(TOP1)]
        loss = [float("nan") if v is None else float(v) for v in test.column("loss")]
        secs = [float(s or 0.0) for s in test.column("Seconds")]
        train_secs = [float(s or 0.0) for s in curves.train.column("Seconds")]
        last = max(secs + train_secs) if (secs or train_secs) else 0.0
        wall = float(r["wall_s"] or last)
        offset = max(0.0, wall - last)       # launch to the log's first line, and the exit: counted at the start
        train = [(int(i), float(v)) for i, v in curves.train.series("loss")]
        manifest = json.loads((sweep / r.variant / "manifest.json").read_text())
        out.append(Curve(float(r.axes["base_lr"]), str(r.axes["lr_policy"]), int(r.params["solver"]["random_seed"]),
                         iters, tuple(steps), tuple(top1), tuple(loss), tuple(min(wall, offset + s) for s in secs), wall,
                         tuple(train), float(manifest.get("overhead_s") or 0.0), int(r["attempts"] or 1)))
    return out


def partial_path(name: str) -> Path:
    return TABLES / f"{name}.partial.json.gz"


def chunks(full: dict, short: dict, problem: dict, have: set[tuple] = frozenset()) -> list[tuple[dict, int]]:
    """One sweep per schedule and length (both lengths of a schedule together: a stopped recording leaves whole
    schedules behind it), over the rates the table lacks for it (a table extended to more rates records only those,
    in a sweep folder of their own)."""
    out = []
    for policy in full["grid"]["lr_policy"]:
        for tables, iters in ((short, problem["search_iters"]), (full, problem["iters"])):
            g = tables["grid"]
            lrs = [lr for lr in g["base_lr"] if not {(lr, policy, s, iters) for s in range(g["repeats"])} <= have]
            if not lrs:
                continue
            name = f"{tables['name']}-{policy}" + ("" if lrs == LRS else "-lr" + "-".join(f"{lr:g}" for lr in lrs))
            out.append(({**tables, "name": name, "grid": {**g, "base_lr": lrs, "lr_policy": [policy]}}, iters))
    return out


def _keys(tables: dict, iters: int) -> set[tuple]:
    g = tables["grid"]
    return {(lr, p, s, iters) for lr in g["base_lr"] for p in g["lr_policy"] for s in range(g["repeats"])}


def _rescaled(curves: list, factor: float) -> list:
    """The curves on another session's clock (factor: that session's iteration time over this one's)."""
    import dataclasses

    if abs(factor - 1.0) < 1e-9:
        return curves
    return [dataclasses.replace(c, times=tuple(t * factor for t in c.times), wall_s=c.wall_s * factor,
                                overhead_s=c.overhead_s * factor) for c in curves]


def _existing(name: str, version: str):
    """The table so far (the finished one, or another session's partial one) and whether it is partial; None: none
    (a finished table of another caffegen version is recorded again). A partial table of another version or an
    unreadable one: one line and exit 2, before anything is made."""
    from caffegen.errors import InputError
    from caffegen.tune.table import load_table

    if partial_path(name).exists():     # first: a stopped extension of a finished table is a partial one too
        try:
            return load_table(partial_path(name), version=version), True
        except InputError as exc:       # another version's runs are not mixed with this one's
            print(f"record: {exc}; or delete it to record {name} afresh", file=sys.stderr)
            sys.exit(2)
    if table_path(name).exists():
        try:
            return load_table(table_path(name), version=version), False
        except InputError as exc:       # another caffegen's (or unreadable): recorded again, in full
            print(f"record: {exc}: recording it again", flush=True)
    return None


def _new(full: dict, work: Path, name: str, seeds: int, version: str):
    """An empty table with this machine's measure probe and range tests."""
    from caffegen.tune.table import CurveTable

    speed = measured(full, work, name)
    found = lrfinds(full, work, name, seeds)
    meta = {"caffegen": version, "commit": _git("rev-parse", "HEAD"), "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "slots": 2, "speed": speed,
            "lrs": lrs_of(name), "sessions": []}
    return CurveTable({}, meta, [], found)


def record(name: str, work: Path, seeds: int, commit: bool) -> Path:
    from caffegen import __version__
    from caffegen.tune.table import CurveTable, save_table

    begun = _existing(name, __version__)
    problem, full, short = specs(name, work, seeds)
    print(f"{name}: {problem['train_images']} train / {problem['val_images']} val images, {problem['classes']} "
          f"classes; {problem['iters']} and {problem['search_iters']} iterations; {len(lrs_of(name))} base_lr x "
          f"{len(full['grid']['lr_policy'])} schedules x {seeds} seeds at each length", flush=True)
    t0, load0 = time.time(), os.getloadavg()[0]
    table, _ = begun or (_new(full, work, name, seeds, __version__), False)
    have = {(c.base_lr, c.lr_policy, c.seed, c.iters) for c in table.curves}
    todo = chunks(full, short, problem, have)
    if not todo:
        print(f"{name}: recorded ({len(table.curves)} runs in {table_path(name).name})", flush=True)
        return table_path(name)
    factor = 1.0
    if begun:      # another session began it (or recorded it, and it gains rates): put this session's runs on its clock
        now = measured(full, work, name)
        factor = table.meta["speed"]["iter_s"] / now["iter_s"]
        print(f"{name}: resuming ({len(table.curves)} runs recorded); this machine's iteration {now['iter_s']:.4f} s "
              f"against {table.meta['speed']['iter_s']:.4f} s: times x {factor:.3f}", flush=True)
    session = {"commit": _git("rev-parse", "HEAD"), "date": dt.date.today().isoformat(), "time_factor": round(factor, 4),
               "load": [round(load0, 2)], "chunks": 0, "seconds": 0}
    table.meta.setdefault("sessions", []).append(session)
    table.meta["lrs"] = sorted(set(table.meta.get("lrs", [])) | set(lrs_of(name)))
    curves = list(table.curves)
    for tables, iters in todo:
        sweep = run_sweep(tables, work)
        curves += _rescaled([c for c in curves_of(sweep, iters) if (c.base_lr, c.lr_policy, c.seed, c.iters) not in have],
                            factor)
        have = {(c.base_lr, c.lr_policy, c.seed, c.iters) for c in curves}
        session.update(chunks=session["chunks"] + 1, seconds=round(time.time() - t0),
                       load=[round(load0, 2), round(os.getloadavg()[0], 2)])
        done = len(todo) == session["chunks"]
        path = save_table(CurveTable(problem, table.meta, curves, table.lrfind),
                          table_path(name) if done else partial_path(name))
        print(f"  {len(curves)} runs -> {path.name}", flush=True)
        if commit:
            _commit(path, f"bench/tables: {name} {'recorded' if done else 'partly recorded'} ({len(curves)} runs, "
                          f"caffegen {__version__})")
    if partial_path(name).exists():
        partial_path(name).unlink()
        if commit:
            _commit(partial_path(name), f"bench/tables: {name}'s partial table, folded into {name}.json.gz")
    print(f"{name}: {len(curves)} runs -> {table_path(name).name} "
          f"({table_path(name).stat().st_size / 1e3:.0f} kB)", flush=True)
    return table_path(name)


def _commit(path: Path, message: str) -> None:
    _git("add", "-A", "--", str(path))
    _git("commit", "-q", "-m", message, "--", str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", nargs="*", default=list(TABLE_PROBLEMS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--tables", type=Path, default=HERE, help="where the tables are kept (default: bench/tables)")
    ap.add_argument("--commit", action="store_true", help="commit each chunk's partial table and each finished table")
    args = ap.parse_args()
    global TABLES
    TABLES = args.tables.resolve()
    for name in args.problem:
        if name not in TABLE_PROBLEMS:
            print(f"record: no problem {name!r}: the problems are {', '.join(TABLE_PROBLEMS)}", file=sys.stderr)
            sys.exit(2)
    if args.seeds < 2:
        print("record: --seeds must be >= 2 (the seed noise needs repeats)", file=sys.stderr)
        sys.exit(2)
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.problem:
        record(name, args.work.resolve(), args.seeds, args.commit)


if __name__ == "__main__":
    main()
