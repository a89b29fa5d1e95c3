"""``caffegen export tensorboard``: a sweep (or one run) as a TensorBoard log directory, written with TensorBoard's
own event writer and plugin protos (no TensorFlow needed).

One sub-folder per run, holding:

* scalars ``train/loss``, ``train/lr``, ``test/loss``, ``test/top1``, ``test/top5`` (step = iteration, wall time =
  the run's start + the log's glog clock), and any other output of the net under ``train/`` or ``test/``;
* the HParams plugin's session summary: the sweep's axes (and the repeat's seed) as hyperparameters, the metrics
  ``hparams/best_top1``, ``hparams/final_top1``, ``hparams/best_top5``, ``hparams/final_loss`` as scalars;
* when ``caffegen evaluate`` has scored the run: one PR curve per class (``eval/pr/<class>``) at the snapshot's
  iteration, and ``eval/top1``, ``eval/top5``.

The log directory's root holds the experiment summary (every hyperparameter with its values, every metric), so
``tensorboard --logdir DIR`` shows the HParams table and parallel-coordinates view at once. The export is
written whole into ``DIR.tmp`` and swapped in: re-exporting replaces it.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..layout import EVAL_DIR, EVAL_SCORES, EVAL_SUMMARY, SWEEP_DB, TENSORBOARD, TRAIN_LOG, is_sweep_dir
from ..logs import parse_log
from ..logs.curves import TOP1, TOP5, Curves
from ..paths import replace_dir
from ..run.folder import read_eval_summary, read_manifest

__all__ = ["export_tensorboard", "TensorBoardExport", "METRICS"]

METRICS = {"best_top1": "best test top-1", "final_top1": "final test top-1", "best_top5": "best test top-5",
           "final_loss": "final train loss"}   # hparams/<key>: the HParams plugin's metric columns


@dataclass
class TensorBoardExport:
    logdir: Path
    runs: list[str]
    scalars: int          # scalar points written, all runs together
    hparams: list[str]
    pr_curves: int


def _start_time(run_dir: Path, curves: Curves) -> float:
    """The run's start as a unix time: its manifest's started_at, else the log's mtime less its last clock value."""
    try:
        started = read_manifest(run_dir)["started_at"]
        return dt.datetime.strptime(started, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (OSError, KeyError, ValueError, TypeError):
        last = max((r["Seconds"] for t in (curves.train, curves.test) for r in t.rows
                    if r.get("Seconds") == r.get("Seconds") and r.get("Seconds") is not None), default=0.0)
        return (run_dir / TRAIN_LOG).stat().st_mtime - last


def _tag(table: str, column: str, loss: str | None, top1: str, top5: str) -> str | None:
    if column in ("NumIters", "Seconds", "Segment"):
        return None
    if column == "LearningRate":
        return "train/lr" if table == "train" else None
    if column == loss:
        return f"{table}/loss"
    if column == top1:
        return f"{table}/top1"
    if column == top5:
        return f"{table}/top5"
    return f"{table}/{column}"


def _hparam_value(v: Any) -> Any:
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def _write_run(writer_dir: Path, run_dir: Path, axes: dict[str, Any], values: dict[str, Any], metric: str,
               top5: str, trial: str) -> tuple[int, int]:
    """One run's event file; (scalar points, PR curves) written."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    log = run_dir / TRAIN_LOG
    curves = parse_log(log).resolved() if log.exists() else None
    start = _start_time(run_dir, curves) if curves is not None else (run_dir.stat().st_mtime)
    writer = EventFileWriter(str(writer_dir))
    n = 0

    def add(step: int, wall: float, value: summary_pb2.Summary) -> None:
        writer.add_event(event_pb2.Event(wall_time=wall, step=int(step), summary=value))

    def scalar(tag: str, v: float) -> summary_pb2.Summary:
        return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v))])

    hparams = {k: _hparam_value(v) for k, v in axes.items()}
    add(0, start, hp.hparams_pb(hparams, trial_id=trial, start_time_secs=start))
    last_step, last_wall = 0, start
    if curves is not None:
        for table_name, table in (("train", curves.train), ("test", curves.test)):
            loss = curves.train_loss if table_name == "train" else curves.test_loss
            for row in table.rows:
                secs = row.get("Seconds")
                wall = start + (secs if secs is not None and secs == secs else 0.0)
                step = int(row["NumIters"])
                if step >= last_step:
                    last_step, last_wall = step, max(last_wall, wall)
                for col, v in row.items():
                    tag = _tag(table_name, col, loss, metric, top5)
                    if tag is None or v is None or not np.isfinite(v):
                        continue
                    add(step, wall, scalar(tag, v))
                    n += 1
    for key in METRICS:
        v = values.get(key)
        if v is not None and np.isfinite(v):
            add(last_step, last_wall, scalar(f"hparams/{key}", v))
            n += 1
    curves_written = 0
    scores = run_dir / EVAL_DIR / EVAL_SCORES
    summary = read_eval_summary(run_dir)
    if scores.is_file() and summary is not None:
        from ..evaluate.metrics import counts_at

        step, wall = int(summary["iteration"]), (run_dir / EVAL_DIR / EVAL_SUMMARY).stat().st_mtime
        with np.load(scores) as z:
            probs, labels = z["probs"], z["labels"]
        for c, cls in enumerate(summary["classes"]):
            k = counts_at(probs[:, c], labels == c)
            name = "eval/pr/" + re.sub(r"[^\w.\-]+", "_", cls["name"])
            add(step, wall, _pr_curve(name, k, f"PR {cls['name']}"))
            curves_written += 1
        for key in ("top1", "top5"):
            if summary.get(key) is not None:
                add(step, wall, scalar(f"eval/{key}", summary[key]))
                n += 1
    writer.flush()
    writer.close()
    return n, curves_written


def _pr_curve(name: str, k: dict, display_name: str):
    """A PR-curve summary as the plugin's ``raw_data_pb`` builds it (rows TP, FP, TN, FN, precision, recall), without
    the TensorFlow that function imports."""
    import numpy as np
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.pr_curve import metadata
    from tensorboard.util import tensor_util

    meta = metadata.create_summary_metadata(display_name=display_name, description="", num_thresholds=len(k["tp"]))
    data = np.stack([k["tp"], k["fp"], k["tn"], k["fn"], k["precision"], k["recall"]]).astype(np.float32)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"{name}/pr_curves", metadata=meta,
                                                                tensor=tensor_util.make_tensor_proto(data))])


def _domain(values: list[Any]):
    from tensorboard.plugins.hparams import summary_v2 as hp

    vals = sorted({_hparam_value(v) for v in values}, key=lambda v: (str(type(v)), v))
    kinds = {type(v) for v in vals}
    if len(kinds) == 1 and kinds <= {str, bool, float, int}:
        if kinds == {int}:
            vals = [float(v) for v in vals]
        return hp.Discrete(vals)
    return None


def export_tensorboard(target: str | Path, out: str | Path | None = None) -> TensorBoardExport:
    """Export a sweep folder (every run) or one run folder to ``out`` [default: TARGET/tensorboard]."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise InputError("export tensorboard needs the tensorboard package: pip install 'caffegen[tensorboard]'") \
            from None
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from ..report.analysis import load_runs

    target = Path(target)
    if is_sweep_dir(target):
        runs, record = load_runs(target)
        items = [(target / r.variant, r.variant, {**r.axes, **({"seed": r.values["seed"]} if r.values.get("seed")
                                                              is not None else {})}, r.values) for r in runs]
        metric, top5 = record.metric, record.top5
    elif (target / TRAIN_LOG).is_file():
        manifest = read_manifest(target)
        items = [(target, target.name, manifest.get("axes", {}), manifest.get("result", {}))]
        metric, top5 = TOP1, TOP5
    else:
        raise InputError(f"{target}: neither a sweep folder ({SWEEP_DB}) nor a run folder ({TRAIN_LOG})")
    if not items:
        raise InputError(f"{target}: the sweep has no runs yet")
    logdir = Path(out) if out else target / TENSORBOARD
    tmp = logdir.with_name(logdir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scalars = curves = 0
    for run_dir, name, axes, values in items:
        n, c = _write_run(tmp / name, run_dir, axes, values, metric, top5, trial=name)
        scalars, curves = scalars + n, curves + c
    names = list(dict.fromkeys(k for _, _, axes, _ in items for k in axes))
    params = [hp.HParam(k, _domain([axes[k] for _, _, axes, _ in items if k in axes])) for k in names]
    config = hp.hparams_config_pb(params, [hp.Metric(f"hparams/{k}", display_name=label)
                                           for k, label in METRICS.items()])
    writer = EventFileWriter(str(tmp))
    writer.add_event(event_pb2.Event(summary=config))
    writer.close()
    replace_dir(tmp, logdir)
    return TensorBoardExport(logdir, [name for _, name, _, _ in items], scalars, names, curves)
