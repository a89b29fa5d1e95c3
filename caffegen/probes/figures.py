"""The probes' figures: the LR range test's loss against lr with its suggestions, and the sanity check's loss."""
from __future__ import annotations

import math
from pathlib import Path

from ..plotting import pyplot, save_png
from .lrfind import LRFind
from .sanity import Sanity

__all__ = ["lr_find_figure", "sanity_figure"]


def lr_find_figure(result: LRFind, out_png: str | Path, title: str = "LR range test") -> Path:
    """Smoothed loss against lr (log axis), raw losses faint, the three suggestions marked, where it blew up."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4.6))
    try:
        raw = [v if math.isfinite(v) else math.nan for v in result.losses]
        ax.plot(result.lrs, raw, ".", color="tab:blue", alpha=0.25, ms=3, label="loss")
        ax.plot(result.lrs, result.smoothed, "-", color="tab:blue", lw=2, label="smoothed loss (debiased EMA 0.98)")
        styles = {"valley": ("tab:red", "o"), "steep": ("tab:orange", "^"), "minimum/10": ("tab:green", "s")}
        for name, lr in result.suggestions.items():
            colour, marker = styles.get(name, ("black", "x"))
            y = result.smoothed[min(range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / lr)))]
            ax.plot([lr], [y], marker, color=colour, ms=9, label=f"{name}: {lr:.3g}" + (" (suggested)"
                                                                                      if name == "valley" else ""))
        if result.blew_up_at:
            ax.axvline(result.blew_up_at, color="gray", ls="--", lw=1, label=f"blew up at {result.blew_up_at:.3g}")
        finite = [v for v in result.smoothed if math.isfinite(v)]
        if finite:
            lo, hi = min(finite), max(finite[: max(1, len(finite) * 9 // 10)] + [finite[0]])
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel="train loss", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        return save_png(fig, out_png)
    except BaseException:
        plt.close(fig)
        raise


def sanity_figure(result: Sanity, out_png: str | Path, title: str = "sanity: overfit a tiny subset") -> Path:
    """The tiny subset's train loss against iteration, the threshold, and the shuffled-label control's loss."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    try:
        for r, label, colour in ((result, "real labels", "tab:blue"), (result.control, "shuffled labels (control)",
                                                                         "tab:gray")):
            if r is not None and r.losses:
                ax.plot([it for it, _ in r.losses], [v if math.isfinite(v) else math.nan for _, v in r.losses],
                        color=colour, lw=1.6, label=label)
        ax.axhline(result.threshold, color="tab:green", ls="--", lw=1, label=f"threshold {result.threshold:.3g}")
        if result.reached_at:
            ax.axvline(result.reached_at, color="tab:green", ls=":", lw=1)
        ax.set(xlabel="iteration", ylabel=f"train loss (mean of {result.window} iterations)", title=f"{title}: {result.line[:4]}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        return save_png(fig, out_png)
    except BaseException:
        plt.close(fig)
        raise
