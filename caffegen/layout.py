"""Where things lie on disk: the names of every file caffegen writes in a sweep folder and in a run folder, defined
once and imported wherever one is read or written.

A sweep folder ``runs/NAME/`` holds ``sweep.db`` (the store; with a ``[search]`` table also the Optuna study),
``spec.json`` (the spec record, so the store can be rebuilt from the folder alone), ``.lock`` (held by the one
process writing the sweep), the report files and one run folder per variant. A run folder holds the prototxt files
(``train_val``, ``solver``, ``deploy``), caffe's whole output in ``train.log``, ``snapshots/`` and
``manifest.json``; ``caffegen evaluate`` adds ``eval/``.
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SWEEP_DB", "SPEC_RECORD", "LOCK", "REPORT_HTML", "REPORT_MD", "SUMMARY_CSV", "REPORT_FIGURES",
           "TENSORBOARD", "TUNE_STATE", "TUNE_LOCK", "TUNE_SPECS", "TRAIN_VAL", "SOLVER", "DEPLOY", "TRAIN_LOG", "MANIFEST", "CURVES_PNG",
           "SNAPSHOT_DIR", "SNAPSHOT_PREFIX", "EVAL_DIR", "EVAL_SUMMARY", "EVAL_SCORES", "LIST_TRAIN", "LIST_VAL", "LABELS",
           "RUNS", "default_out", "parse_snapshot_name", "is_sweep_dir", "study_storage"]

RUNS = Path("runs")                # where a command puts its sweep folder when not told: runs/NAME


def default_out(name: str) -> Path:
    """``runs/NAME``: a command's output folder when ``--out`` is not given."""
    return RUNS / name


# -- a sweep folder
SWEEP_DB = "sweep.db"              # the store (one row per run) and, with [search], the Optuna study
SPEC_RECORD = "spec.json"          # the spec record (also in sweep.db's meta): what a rebuilt store starts from
LOCK = ".lock"                     # held by the one process that writes the sweep
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
SUMMARY_CSV = "summary.csv"
REPORT_FIGURES = "report"          # the figures report.md links
TENSORBOARD = "tensorboard"        # `caffegen export tensorboard`'s default log dir

# -- a tune folder (caffegen tune --out): a folder per stage, named for it (measure/, sanity/, lr-find/, search/,
#    confirm/seedN/, final/), each stage's spec in specs/, the decisions in tune.json
TUNE_STATE = "tune.json"
TUNE_LOCK = ".tune.lock"
TUNE_SPECS = "specs"

# -- a run folder (caffe runs with it as its working directory, so these are also the names in the solver)
TRAIN_VAL = "train_val.prototxt"
SOLVER = "solver.prototxt"
DEPLOY = "deploy.prototxt"
TRAIN_LOG = "train.log"            # caffe's whole output, every attempt and segment appended
MANIFEST = "manifest.json"
CURVES_PNG = "curves.png"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_PREFIX = f"{SNAPSHOT_DIR}/snap"   # the solver's snapshot_prefix: snapshots/snap_iter_N.solverstate
EVAL_DIR = "eval"                  # `caffegen evaluate`'s output
EVAL_SUMMARY = "summary.json"
EVAL_SCORES = "scores.npz"

# -- the list files `caffegen lists` writes (the seed's names)
LIST_TRAIN = "list_train_shuffle.txt"
LIST_VAL = "list_val_shuffle.txt"
LABELS = "labels.txt"         # class names, one per label

# Caffe names a snapshot <prefix>_iter_N.caffemodel and <prefix>_iter_N.solverstate (``.h5`` with HDF5 snapshots).
_SNAPSHOT_RE = re.compile(r"_iter_(\d+)\.(solverstate|caffemodel)(\.h5)?$")


def parse_snapshot_name(name: str) -> tuple[int, str] | None:
    """(iteration, "solverstate" | "caffemodel") of a snapshot file name, None for any other name."""
    m = _SNAPSHOT_RE.search(name)
    return (int(m.group(1)), m.group(2)) if m else None


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_DB).is_file()


def study_storage(sweep_dir: Path) -> str:
    """The Optuna storage URL of a sweep's study (what ``optuna-dashboard`` opens)."""
    return f"sqlite:///{(Path(sweep_dir) / SWEEP_DB).resolve()}"
