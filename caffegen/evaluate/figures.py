"""The evaluation's figures: the confusion matrix, one-vs-rest PR and ROC curves (matplotlib, Agg, PNG bytes)."""
from __future__ import annotations

import numpy as np

from ..plotting import png_bytes, pyplot

__all__ = ["confusion_figure", "curves_figure"]


def confusion_figure(conf: np.ndarray, names: list[str], title: str) -> bytes:
    """Counts[true, predicted], each row coloured by its share of the class (the recall), the count written in the
    cells when there is room."""
    plt = pyplot()
    k = len(names)
    size = min(16.0, 3.0 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    rows = conf.sum(axis=1, keepdims=True)
    share = np.divide(conf, np.maximum(rows, 1))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8 if k > 12 else 9)
    ax.set_yticks(range(k), names, fontsize=8 if k > 12 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if conf[i, j]:
                    ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return png_bytes(fig, outside=True)


def curves_figure(curves: list[tuple[np.ndarray, np.ndarray]], names: list[str], areas: list[float], kind: str,
                  title: str) -> bytes:
    """One-vs-rest curves of every class on one axis: ``kind`` "pr" (x recall, y precision, area AP) or "roc"
    (x false positive rate, y true positive rate, area AUC). With more than 10 classes only the 5 worst are in
    colour (those are the ones to look at), the others thin and grey; the legend lists them by area, worst first."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    cmap = plt.colormaps["tab10"]
    order = sorted(range(len(names)), key=lambda i: areas[i])
    shown = order if len(names) <= 10 else order[:5]
    style = "steps-post" if kind == "pr" else "default"
    for i in order[len(shown):][::-1]:
        x, y = curves[i]
        ax.plot(x, y, lw=0.8, color="0.75", drawstyle=style,
                label=f"the other {len(names) - len(shown)} classes" if i == order[len(shown)] else None)
    for rank, i in enumerate(shown):
        x, y = curves[i]
        ax.plot(x, y, lw=1.6, color=cmap(rank % 10), label=f"{names[i]} ({areas[i]:.3f})", drawstyle=style)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if len(shown) < len(names):   # the coloured classes first, then the grey rest
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
    ax.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title=("AP" if kind == "pr" else "AUC") + ", worst first", title_fontsize=8)
    return png_bytes(fig, outside=True)
