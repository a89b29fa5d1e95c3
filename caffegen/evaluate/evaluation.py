"""``caffegen evaluate``: a run's snapshot scored image by image on its val list (or any list), and what that says
per class.

The numbers (pure, from the scores): top-1/top-5 counted as Caffe's Accuracy layer counts them (on the raw
classifier scores, a tie with the label's score is a hit only when fewer than k scores are higher), the confusion
matrix, precision/recall/F1/support per class, one-vs-rest PR and ROC curves with AP and AUC per class, the most
confident mistakes. When the list is the net's own val list and a test pass of the log ran at the snapshot's
iteration, the log's top-1 is recorded beside it: the same weights on the same images must give the same number.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.lists import load_list
from ..errors import InputError
from ..layout import EVAL_DIR, LABELS, SOLVER, TRAIN_LOG, TRAIN_VAL, is_sweep_dir
from ..logs import parse_log
from ..paths import exclusive
from ..run.folder import find_snapshot
from . import metrics
from .forward import Scores, eval_net, forward
from .result import Evaluation
from .writers import write_evaluation

__all__ = ["Evaluation", "evaluate_run", "evaluate_sweep", "class_names", "measure"]


def class_names(classes: int, *candidates: Path | None) -> list[str]:
    """Label names from the first ``labels.txt`` among ``candidates`` (a list file's folder) that names exactly
    ``classes`` classes; "0".."K-1" otherwise."""
    for folder in candidates:
        if folder is None:
            continue
        path = Path(folder) / LABELS
        if path.is_file():
            names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if len(names) == classes:
                return names
    return [str(i) for i in range(classes)]


def measure(scores: Scores, classes: int) -> dict[str, Any]:
    """Everything ``eval/`` shows, from the scores alone."""
    raw, labels = scores.scores, scores.labels
    probs = scores.probs
    pred = raw.argmax(axis=1)
    conf = metrics.confusion(labels, pred, classes)
    per = metrics.per_class(conf)
    pr, roc, ap, auc = [], [], [], []
    for c in range(classes):
        positive = labels == c
        p, r, _ = metrics.pr(probs[:, c], positive)
        pr.append((np.r_[0.0, r], np.r_[p[0] if len(p) else 1.0, p]))
        fpr, tpr, _ = metrics.roc(probs[:, c], positive)
        roc.append((fpr, tpr))
        ap.append(metrics.average_precision(probs[:, c], positive) if positive.any() else float("nan"))
        auc.append(metrics.auc(fpr, tpr) if positive.any() and (~positive).any() else float("nan"))
    return {"top1": metrics.topk_accuracy(raw, labels, 1),
            "top5": metrics.topk_accuracy(raw, labels, 5) if classes > 5 else None,
            "pred": pred, "probs": probs, "confusion": conf, "per_class": per, "pr": pr, "roc": roc,
            "ap": ap, "auc": auc}


def _labels_in_range(labels: np.ndarray, classes: int, where: str) -> None:
    bad = labels[(labels < 0) | (labels >= classes)]
    if len(bad):
        raise InputError(f"{where}: label {int(bad[0])} is outside the net's {classes} classes (0..{classes - 1})")


def _list_images(list_file: Path, root_folder: str, run_dir: Path) -> list[str]:
    """The image paths of a list (root_folder + path, as Caffe joins them), checked to exist: one line naming the
    first missing file."""
    items = load_list(list_file)
    paths = []
    for i, (p, _) in enumerate(items, 1):
        full = Path(root_folder + p)
        full = full if full.is_absolute() else run_dir / full
        if not full.is_file():
            raise InputError(f"{list_file}:{i}: image not found: {full}")
        paths.append(str(full))
    return paths


def _lmdb_images(run_dir: Path, batch: int) -> int:
    """Images one test pass of the run reads from its LMDB (test_iter x batch: an LMDB's size is not at hand)."""
    from ..prototxt.validate import parse_text

    solver = parse_text((run_dir / SOLVER).read_text(encoding="utf-8"), "solver", SOLVER)
    if not solver.test_iter:
        raise InputError(f"{run_dir}: solver.prototxt has no test_iter (how many batches its LMDB holds)")
    return solver.test_iter[0] * batch


def _caffe_test(run_dir: Path, iteration: int, metric: str | None, images: int, batch: int) -> dict[str, Any] | None:
    """The log's test pass at ``iteration`` and the images it saw (test_iter x batch), when there is one."""
    log = run_dir / TRAIN_LOG
    if not log.exists():
        return None
    test = parse_log(log).resolved().test
    rows = [r for r in test.rows if r["NumIters"] == iteration]
    if not rows:
        return None
    row = rows[-1]
    names = [metric] if metric else [c for c in test.columns if c.startswith("accuracy")]
    value = next((row[n] for n in names if n in row and row[n] is not None), None)
    if value is None:
        return None
    from ..prototxt.validate import parse_text

    solver = parse_text((run_dir / SOLVER).read_text(encoding="utf-8"), "solver", SOLVER)
    seen = solver.test_iter[0] * batch if solver.test_iter else None
    return {"iteration": iteration, "metric": metric, "top1": value, "images": seen,
            "same_images": seen == images}


def evaluate_run(run_dir: str | Path, *, snapshot: str = "best", list_file: str | Path | None = None,
                 gpu: int | None = None, progress: Callable[[int, int], None] | None = None,
                 out_dir: str | Path | None = None, mistakes: int = 48) -> Evaluation:
    """Score ``run_dir``'s snapshot (``best``, ``last`` or an iteration) on its val list or ``list_file``, and
    write ``eval/`` (or ``out_dir``)."""
    run_dir = Path(run_dir)
    net_file = run_dir / TRAIN_VAL
    if not net_file.is_file():
        raise InputError(f"{run_dir}: not a run folder (no train_val.prototxt)")
    iteration, weights = find_snapshot(run_dir, snapshot)
    listed = Path(list_file).expanduser().resolve() if list_file is not None else None
    en = eval_net(net_file.read_text(encoding="utf-8"), run_dir, listed, where=str(net_file))
    if en.list_file is not None:
        paths = _list_images(en.list_file, en.root_folder, run_dir)
        images = len(paths)
    else:
        paths, images = [], _lmdb_images(run_dir, en.batch)
    out = Path(out_dir) if out_dir else run_dir / EVAL_DIR
    with exclusive(out.with_name(out.name + ".lock"), f"another caffegen evaluate (pid {{pid}}) is writing {out}"):
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        scores = forward(en, weights, run_dir, images, tmp, gpu=gpu, progress=progress)
        classes = en.head.num_output
        _labels_in_range(scores.labels, classes, str(en.list_file or en.lmdb))
        metric = _sweep_metric(run_dir) or en.head.top1
        names = class_names(classes, en.list_file.parent if en.list_file else None, run_dir.parent / "lists", run_dir)
        ev = Evaluation(run_dir, iteration, weights, en.list_file, names, scores, paths,
                        caffe_test=_caffe_test(run_dir, iteration, metric, images, en.batch) if listed is None
                        else None)
        ev.measures = measure(scores, classes)
        ev.out_dir = write_evaluation(ev, out, tmp, mistakes=mistakes)
    return ev


def _sweep_metric(run_dir: Path) -> str | None:
    """The metric the run's sweep ranks by (its store's record), when the run belongs to a sweep."""
    from ..sweep.store import read_sweep

    if not is_sweep_dir(run_dir.parent):
        return None
    return read_sweep(run_dir.parent)[1].metric


def evaluate_sweep(sweep_dir: str | Path, *, top: int = 1, report: bool = True, **kwargs: Any) -> list[Evaluation]:
    """Evaluate the sweep's winner (or its ``top`` best variants; of repeats, the best seed), then rewrite
    ``report.html`` so it links each evaluation (``report`` False: the caller writes it, once)."""
    from ..report.analysis import load_runs, ranked_variants
    from ..report.writers import write_report

    sweep_dir = Path(sweep_dir)
    runs, record = load_runs(sweep_dir)
    ranked = [v for v in ranked_variants(runs, record) if v.score is not None]
    if not ranked:
        raise InputError(f"{sweep_dir}: no run has a test top-1 yet: nothing to evaluate")
    out = []
    for v in ranked[:top]:
        sign = 1.0 if v.maximize else -1.0
        best = max((r for r in v.runs if r.best_top1 is not None), key=lambda r: sign * r.best_top1)
        out.append(evaluate_run(sweep_dir / best.variant, **kwargs))
    if report:
        write_report(sweep_dir)
    return out
