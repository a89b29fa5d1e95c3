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
from ..paths import write_atomic
from .checks import as_float
from .options import NetOptions, SolverOptions, test_iter_for, variant_name
from .render import render_deploy, render_net, render_solver
from .schedule import resolve_policy
from .validate import check_net_shapes, check_text

__all__ = ["Written", "count_list", "resolve_test_iter", "write_variant", "write_solver_set", "FILES", "INDEX_FIELDS"]

FILES = ("train_val.prototxt", "solver.prototxt", "deploy.prototxt")
INDEX_FIELDS = ("name", "file", "base_lr", "lr_policy", "gamma", "stepsize", "stepvalue", "power", "max_iter",
                "type", "momentum", "momentum2", "delta", "rms_decay", "weight_decay", "test_iter",
                "test_interval", "snapshot_prefix")


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
    note = None
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
    solver, note = resolve_test_iter(dataclasses.replace(solver, net="train_val.prototxt"), net, out)
    texts = {
        "train_val.prototxt": ("net", render_net(net)),
        "solver.prototxt": ("solver", render_solver(solver, net)),
        "deploy.prototxt": ("net", render_deploy(net)),
    }
    if validate:
        for name, (kind, text) in texts.items():
            check_text(text, kind, str(out / name))
        if pycaffe_check:
            check_net_shapes(texts["train_val.prototxt"][1], net, deploy_text=texts["deploy.prototxt"][1],
                             where=str(out / "train_val.prototxt"))
    paths = {name: write_atomic(out / name, text) for name, (_, text) in texts.items()}
    return Written(paths, solver, notes=[note] if note else [])


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
    base, note = resolve_test_iter(dataclasses.replace(base, net="train_val.prototxt"), net, out)
    net_text = render_net(net)
    solvers: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for lr in lrs:
        for policy in policies:
            axes = {"base_lr": lr, "lr_policy": resolve_policy(policy)}
            if base.type != "SGD":
                axes["type"] = base.type
            name = variant_name(axes)
            if name in solvers:
                raise InputError(f"two variants would both be written as {name}.prototxt (duplicate --lr?)")
            prefix = name if base.snapshot_prefix == "snapshot" else f"{base.snapshot_prefix}_{name}"
            opts = dataclasses.replace(base, base_lr=lr, lr_policy=policy, snapshot_prefix=prefix)
            solvers[name] = render_solver(opts, net)
            eff = opts.effective(net.test_batch)
            rows.append({"name": name, "file": f"{name}.prototxt", **{k: eff[k] for k in INDEX_FIELDS[2:]}})
    if validate:
        check_text(net_text, "net", str(out / "train_val.prototxt"))
        for name, text in solvers.items():
            check_text(text, "solver", str(out / f"{name}.prototxt"))
        if pycaffe_check:
            check_net_shapes(net_text, net, where=str(out / "train_val.prototxt"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else ",".join(map(str, v)) if isinstance(v, list) else v)
                         for k, v in row.items()})
    files = {out / "train_val.prototxt": net_text}
    files.update({out / f"{name}.prototxt": text for name, text in solvers.items()})
    files[out / "index.json"] = json.dumps({"net": net.to_dict(), "variants": rows}, indent=2) + "\n"
    files[out / "index.csv"] = buf.getvalue()
    paths = {path.name: write_atomic(path, text) for path, text in files.items()}
    return Written(paths, base, rows=rows, notes=[note] if note else [])
