"""Per-class measures of a classifier's predictions, from its class scores: pure numpy, no state.

* :func:`confusion`: counts[true, predicted];
* :func:`per_class`: precision, recall, F1 and support of each class (support = the row sums);
* :func:`roc` and :func:`pr`: one-vs-rest curves from the scores of one class, with every distinct score as a
  threshold (ties taken together), and their areas: :func:`auc` (trapezoids) and :func:`average_precision`
  (sum over thresholds of the recall step times the precision there: scikit-learn's definition, no interpolation).
"""
from __future__ import annotations

import numpy as np

__all__ = ["confusion", "per_class", "roc", "pr", "auc", "average_precision", "topk_accuracy", "counts_at"]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def per_class(conf: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class (0 where a ratio has no denominator)."""
    tp = np.diag(conf).astype(float)
    predicted, support = conf.sum(axis=0).astype(float), conf.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def _counts(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first, and those scores."""
    order = np.argsort(-np.asarray(scores, float), kind="mergesort")
    s, y = np.asarray(scores, float)[order], np.asarray(positive, bool)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return tp, fp, s[last]


def roc(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), starting at (0, 0)."""
    tp, fp, thr = _counts(scores, positive)
    p, n = tp[-1] if len(tp) else 0, fp[-1] if len(fp) else 0
    tpr = np.r_[0.0, tp / p] if p else np.r_[0.0, np.zeros(len(tp))]
    fpr = np.r_[0.0, fp / n] if n else np.r_[0.0, np.zeros(len(fp))]
    return fpr, tpr, np.r_[np.inf, thr]


def pr(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), from the highest threshold down; recall starts above 0."""
    tp, fp, thr = _counts(scores, positive)
    p = tp[-1] if len(tp) else 0
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / p if p else np.zeros(len(tp))
    return precision, recall, thr


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve given by its points (trapezoids)."""
    return float(np.trapezoid(y, x)) if hasattr(np, "trapezoid") else float(np.trapz(y, x))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over the thresholds (scikit-learn's average_precision_score)."""
    precision, recall, _ = pr(scores, positive)
    if not len(recall) or recall[-1] == 0:
        return 0.0
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among their k highest scores (Caffe's Accuracy layer counts a tie of the label's
    score with the k-th as a hit only when fewer than k scores are higher: the same here)."""
    probs, labels = np.asarray(probs), np.asarray(labels, int)
    own = probs[np.arange(len(labels)), labels]
    higher = (probs > own[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def counts_at(scores: np.ndarray, positive: np.ndarray, num_thresholds: int = 201) -> dict[str, np.ndarray]:
    """TP, FP, TN, FN, precision and recall at ``num_thresholds`` evenly spaced thresholds in [0, 1] (a score at or
    above a threshold counts as positive): the arrays TensorBoard's PR-curve plugin stores."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    thresholds = np.linspace(0.0, 1.0, num_thresholds)
    above = s[None, :] >= thresholds[:, None]
    tp = (above & y).sum(axis=1).astype(float)
    fp = (above & ~y).sum(axis=1).astype(float)
    fn, tn = y.sum() - tp, (~y).sum() - fp
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall}
