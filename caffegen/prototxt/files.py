"""Rendered text -> files on disk, checked first: everything is rendered and validated (caffe_pb2 schema, pycaffe
shapes) before the first file is written, so a failed check leaves nothing half-written.

This is also the one place that reads the val list to derive ``test_iter`` (:func:`resolve_test_iter`); the
notes it produces come back in :class:`Written` for the caller (the CLI prints them).

Paths inside the files are relative to Caffe's working directory: run ``caffe train -solver solver.prototxt``
with ``cwd`` set to the folder holding them.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..layout import DEPLOY, SOLVER, TRAIN_VAL
from ..paths import write_atomic
from ..checks import as_float
from .options import NetOptions, SolverOptions, coverage_note, test_iter_for, variant_name
from .basesolver import load_solver, merge, variant_solver
from .chains import Piece, base_of, chained, planned
from .render import render_deploy, render_net, render_solver
from .schedule import resolve_policy
from .deploy import deploy_text
from .netread import load_net, phases
from .usernet import WiredNet, heads_of
from .validate import check_net_shapes, check_text, check_user_net, parse_text

__all__ = ["Written", "count_list", "resolve_test_iter", "write_variant", "write_user_variant", "write_solver_set",
           "write_user_solver_set", "segment_solver", "INDEX_FIELDS"]

INDEX_FIELDS = ("name", "file", "base_lr", "lr_policy", "gamma", "stepsize", "stepvalue", "power", "max_iter",
                "type", "momentum", "momentum2", "delta", "rms_decay", "weight_decay", "test_iter",
                "test_interval", "snapshot_prefix", "segments")


@dataclass(frozen=True)
class Written:
    """What a write produced: the files by name, the solver as written, index rows (solver sets), notes."""

    paths: dict[str, Path]
    solver: SolverOptions
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def count_list(path: str | Path) -> int | None:
    """Non-blank lines of an ImageData list file, or None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def resolve_test_iter(solver: SolverOptions, net: NetOptions | None = None,
                      base_dir: str | Path | None = None) -> tuple[SolverOptions, str | None]:
    """``solver`` with test_iter filled in so one test pass covers the whole validation set.

    test_iter = ceil(lines of ``net.val_source`` / ``net.test_batch``); a relative val_source is
    resolved against ``base_dir`` (Caffe's working directory; default: this process's cwd). When the
    list cannot be read (or the backend is LMDB) the fallback is :func:`~caffegen.prototxt.options.test_iter_for`
    (the seed's 1000 images), and the second item is a note saying so.
    """
    if solver.test_iter is not None:
        return solver, None
    net = net or NetOptions()
    source = Path(net.val_source)
    if not source.is_absolute():
        source = Path(base_dir or ".") / source
    images = count_list(source) if net.backend == "imagedata" else None
    test_iter = test_iter_for(images, net.test_batch)
    note = coverage_note(images, test_iter, net.test_batch)
    if not images:
        what = "an LMDB" if net.backend == "lmdb" else f"{source} not readable or empty"
        note = (f"test_iter = ceil({test_iter_for(None, 1)}/{net.test_batch}) = {test_iter} "
                f"(fallback: {what}; pass --test-iter to set it)")
    return dataclasses.replace(solver, test_iter=test_iter), note


def write_variant(out_dir: str | Path, net: NetOptions, solver: SolverOptions, validate: bool = True,
                  pycaffe_check: bool = True) -> Written:
    """Render, validate, then write ``train_val.prototxt``, ``solver.prototxt``, ``deploy.prototxt``.

    The solver's ``net`` becomes ``train_val.prototxt`` (relative): run caffe with ``cwd=out_dir``, which
    the list sources need anyway, and the folder stays relocatable. Nothing is written when a check fails.
    """
    out = Path(out_dir)
    solver, note = resolve_test_iter(dataclasses.replace(solver, net=TRAIN_VAL), net, out)
    texts = {
        TRAIN_VAL: ("net", render_net(net)),
        SOLVER: ("solver", render_solver(solver, net)),
        DEPLOY: ("net", render_deploy(net)),
    }
    if validate:
        for name, (kind, text) in texts.items():
            check_text(text, kind, str(out / name))
        if pycaffe_check:
            check_net_shapes(texts[TRAIN_VAL][1], net, deploy_text=texts[DEPLOY][1],
                             where=str(out / TRAIN_VAL))
    paths = {name: write_atomic(out / name, text) for name, (_, text) in texts.items()}
    return Written(paths, solver, notes=[note] if note else [])


def segment_solver(text: str, piece: Piece, net: str | None = None, where: str = "solver") -> str:
    """A chain segment's solver: ``text`` (a whole solver) with the piece's policy fields and its ``max_iter``
    (the segment's end), the other policies' fields cleared; ``net`` replaces the net path when given."""
    from google.protobuf import text_format

    solver = parse_text(text, "solver", where)
    for name in ("gamma", "power", "stepsize", "stepvalue"):
        solver.ClearField(name)
    for name, value in piece.solver_fields().items():
        if name == "stepvalue":
            solver.stepvalue.extend(value)
        else:
            setattr(solver, name, value)
    if net is not None:
        solver.net = net
    return text_format.MessageToString(solver)


CHAIN_SCRIPT = """#!/bin/sh
# {name}: {schedule} as {n} segments, each a `caffe train` of Caffe's own policies resumed from the previous
# segment's snapshot (docs/schedules.md). Run it from this folder; CAFFE names the binary (default: caffe).
# Each caffe opens its data layers at their first record again: `caffegen sweep` carries the TRAIN stream
# across the boundaries, this script does not.
set -e
CAFFE="${{CAFFE:-caffe}}"
{lines}
"""


def _chain_set_files(name: str, opts: SolverOptions, text: str, prefix: str) -> tuple[dict[str, str], int]:
    """The files of one chained variant of a solver set: ``<name>.segNN.prototxt`` per segment and ``<name>.sh``
    that runs them in turn (plateau, decided on the test metric as it trains, needs the driver: refused)."""
    if not planned(opts.lr_policy):
        raise InputError(f"{name}: {base_of(opts.lr_policy)[0]} decides its drops on the test metric as the run "
                         "goes; only `caffegen sweep` (or tune) can run it, not a solver file")
    pieces = opts.pieces()
    files, lines = {}, []
    for k, piece in enumerate(pieces):
        seg = f"{name}.seg{k:02d}.prototxt"
        files[seg] = segment_solver(text, piece, where=seg)
        resume = f" -snapshot {prefix}_iter_{piece.start}.solverstate" if k else ""
        lines.append(f'"$CAFFE" train -solver {seg}{resume} "$@"')
    files[f"{name}.sh"] = CHAIN_SCRIPT.format(name=name, schedule=opts.lr_policy, n=len(pieces),
                                              lines="\n".join(lines))
    return files, len(pieces)


def write_solver_set(out_dir: str | Path, net: NetOptions, base: SolverOptions, lrs: list[float],
                     policies: list[str], validate: bool = True, pycaffe_check: bool = True) -> Written:
    """One solver per (lr, policy) in ``out_dir`` plus ``train_val.prototxt`` and ``index.csv``/``index.json``.

    Each solver is ``<name>.prototxt`` (:func:`~caffegen.prototxt.options.variant_name`) with
    ``net: "train_val.prototxt"`` and ``snapshot_prefix: "<name>"`` (``"<prefix>_<name>"`` for a non-default
    prefix): run ``caffe train -solver <name>.prototxt`` with cwd = ``out_dir``. Everything is rendered and
    validated before the first file is written.
    """
    out = Path(out_dir)
    lrs = [as_float("base_lr (--lr)", lr, gt=0) for lr in lrs]
    if not lrs:
        raise InputError("no learning rate given")
    base, note = resolve_test_iter(dataclasses.replace(base, net=TRAIN_VAL), net, out)
    net_text = render_net(net)
    solvers: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for lr in lrs:
        for policy in policies:
            axes = {"base_lr": lr, "lr_policy": policy if chained(policy) else resolve_policy(policy)}
            if base.type != "SGD":
                axes["type"] = base.type
            name = variant_name(axes)
            if any(row["name"] == name for row in rows):
                raise InputError(f"two variants would both be written as {name} (duplicate --lr?)")
            prefix = name if base.snapshot_prefix == "snapshot" else f"{base.snapshot_prefix}_{name}"
            opts = dataclasses.replace(base, base_lr=lr, lr_policy=axes["lr_policy"], snapshot_prefix=prefix)
            rows.append(_index_row(name, opts, opts.effective(net.test_batch), render_solver(opts, net), solvers))
    if validate:
        check_text(net_text, "net", str(out / TRAIN_VAL))
        for file, text in solvers.items():
            if file.endswith(".prototxt"):
                check_text(text, "solver", str(out / file))
        if pycaffe_check:
            check_net_shapes(net_text, net, where=str(out / TRAIN_VAL))
    files = {out / TRAIN_VAL: net_text, **_solver_set_files(out, solvers, rows, net.to_dict())}
    paths = {path.name: write_atomic(path, text) for path, text in files.items()}
    return Written(paths, base, rows=rows, notes=[note] if note else [])


def _index_row(name: str, opts: SolverOptions, eff: dict[str, Any], text: str, files: dict[str, str]) -> dict:
    """One variant of a solver set: its files added to ``files`` (``<name>.prototxt``, or a chain's segment solvers
    and script), its index row returned."""
    segments = 1
    if opts.is_chain:   # the index shows the schedule, not its first segment's solver fields
        chain, segments = _chain_set_files(name, opts, text, opts.snapshot_prefix)
        files.update(chain)
        eff = {**eff, "base_lr": opts.base_lr, "lr_policy": opts.lr_policy, "max_iter": opts.max_iter,
               "gamma": None, "stepsize": None, "stepvalue": None, "power": None}
    else:
        files[f"{name}.prototxt"] = text
    file = f"{name}.sh" if opts.is_chain else f"{name}.prototxt"
    return {"name": name, "file": file, **{k: eff[k] for k in INDEX_FIELDS[2:-1]}, "segments": segments}


def _solver_set_files(out: Path, solvers: dict[str, str], rows: list[dict[str, Any]],
                      net: dict[str, Any]) -> dict[Path, str]:
    """The solver files of a set (by file name) and its index (CSV and JSON: each variant's effective parameters;
    a chained one's are its first segment's)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else ",".join(map(str, v)) if isinstance(v, list) else v)
                         for k, v in row.items()})
    files = {out / file: text for file, text in solvers.items()}
    files[out / "index.json"] = json.dumps({"net": net, "variants": rows}, indent=2) + "\n"
    files[out / "index.csv"] = buf.getvalue()
    return files


def write_user_solver_set(out_dir: str | Path, net_path: str | Path, lrs: list[float], policies: list[str],
                          overrides: dict[str, Any] | None = None, base_path: str | Path | None = None) -> Written:
    """``caffegen solvers --net FILE [--base-solver FILE]``: the solver grid for any net. Each solver names the net
    by its absolute path (run caffe from the folder its relative paths expect: a Model Zoo net's Caffe root) and
    carries every field of the base solver that the grid does not set; nothing is written when any fails to check."""
    out = Path(out_dir)
    net_path = Path(net_path).resolve()
    net = load_net(net_path)
    heads_of(net, str(net_path))  # a net caffegen cannot rank is refused here too
    base = load_solver(base_path) if base_path else None
    overrides = dict(overrides or {})
    if base is not None:  # outside a sweep the base's own snapshot interval and device stand too
        for name in ("snapshot", "solver_mode", "device_id"):
            if name not in overrides and base.HasField(name):
                value = getattr(base, name)
                overrides[name] = ("CPU", "GPU")[value] if name == "solver_mode" else value
    notes = []
    if "test_iter" not in overrides and not (base is not None and base.test_iter):
        test = next((layer for layer in net.layer if layer.type == "ImageData" and "TEST" in phases(layer)), None)
        images = count_list(test.image_data_param.source) if test is not None else None
        batch = test.image_data_param.batch_size if test is not None else 1
        overrides["test_iter"] = test_iter_for(images, max(1, batch))
        if not images:
            notes.append(f"test_iter = {overrides['test_iter']} (fallback: the net's TEST list cannot be read from "
                         "here; pass --test-iter or --base-solver to set it)")
    lrs = [as_float("base_lr (--lr)", lr, gt=0) for lr in lrs]
    prefix = overrides.pop("snapshot_prefix", None) or (base.snapshot_prefix if base is not None and
                                                        base.HasField("snapshot_prefix") else None)
    solvers: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for lr in lrs:
        for policy in policies:
            values = {**overrides, "base_lr": lr, "lr_policy": policy if chained(policy) else resolve_policy(policy)}
            options, extras = variant_solver(values, base)
            opts = SolverOptions(**{**options, "net": str(net_path)})
            axes = {"base_lr": lr, "lr_policy": opts.lr_policy, **({"type": opts.type} if opts.type != "SGD" else {})}
            name = variant_name(axes)
            if any(row["name"] == name for row in rows):
                raise InputError(f"two variants would both be written as {name} (duplicate --lr?)")
            opts = dataclasses.replace(opts, snapshot_prefix=f"{prefix}_{name}" if prefix else name)
            rows.append(_index_row(name, opts, opts.effective(), merge(render_solver(opts), base, extras), solvers))
    for file, text in solvers.items():
        if file.endswith(".prototxt"):
            check_text(text, "solver", str(out / file))
    record = {"prototxt": str(net_path), "base_solver": str(Path(base_path).resolve()) if base_path else None}
    files = _solver_set_files(out, solvers, rows, record)
    paths = {path.name: write_atomic(path, text) for path, text in files.items()}
    first = SolverOptions(**variant_solver({**overrides, "base_lr": lrs[0], "lr_policy": policies[0]}, base)[0])
    return Written(paths, first, rows=rows, notes=notes)


def write_user_variant(out_dir: str | Path, wired: WiredNet, solver: SolverOptions, *, base=None,
                       extras: dict[str, Any] | None = None, weights: str | None = None, validate: bool = True,
                       pycaffe_check: bool = True) -> Written:
    """A user net's run files: the wired ``train_val.prototxt``, the solver (ours over the base solver's fields),
    and ``deploy.prototxt`` (its deploy form); checked with caffe_pb2 and pycaffe (the net built in TRAIN and TEST
    on its real data, ``weights`` copied into it) before any is written."""
    out = Path(out_dir)
    solver = dataclasses.replace(solver, net=TRAIN_VAL)
    notes = list(wired.notes)
    if solver.test_iter is None:
        solver = dataclasses.replace(solver, test_iter=test_iter_for(None, wired.test_batch))
        notes.append(f"test_iter = {solver.test_iter} (fallback: the TEST data cannot be counted; set [solver] "
                     "test_iter to cover your val set once)")
    texts = {
        TRAIN_VAL: ("net", wired.text),
        SOLVER: ("solver", merge(render_solver(solver), base, extras)),
        DEPLOY: ("net", deploy_text(parse_text(wired.text, "net"), where=str(wired.source),
                                                 fix='set [net] crop, or data = "imagedata" with [net] resize')),
    }
    if validate:
        for name, (kind, text) in texts.items():
            check_text(text, kind, str(out / name))
        if pycaffe_check:
            check_user_net(wired.text, texts[DEPLOY][1], weights, where=str(wired.source))
    paths = {name: write_atomic(out / name, text) for name, (_, text) in texts.items()}
    return Written(paths, solver, notes=notes)
