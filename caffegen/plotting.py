"""The plumbing every figure of caffegen shares (report, evaluate, the probes, ``caffegen plot``): matplotlib on the
Agg backend (files only, no display), a figure as PNG bytes or a PNG file, and the moving average the curves are
smoothed with."""
from __future__ import annotations

import io
import math
from pathlib import Path

__all__ = ["pyplot", "png_bytes", "save_png", "ema"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, out_png: str | Path) -> Path:
    """Lay out and write ``fig`` as a PNG (its folder made if need be), close it; return the path."""
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=100)
    finally:
        pyplot().close(fig)
    return out


def png_bytes(fig, *, outside: bool = False) -> bytes:
    """``fig`` laid out and as PNG bytes (for embedding in HTML), closed after: one layout pass and one draw.
    ``outside``: a legend sits outside the axes (Optuna's views, the per-class curves), which only a tight bounding
    box keeps whole (it costs two draws more: a report draws dozens of figures, so only those ask for it)."""
    buf = io.BytesIO()
    try:
        if outside:
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        else:
            fig.tight_layout()
            fig.savefig(buf, format="png", dpi=100)
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def ema(values: list[float], alpha: float) -> list[float]:
    """Exponential moving average ``s = alpha*s + (1-alpha)*x`` that steps over nan/inf (they stay nan)."""
    out, s = [], None
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(float("nan"))
            continue
        s = v if s is None else alpha * s + (1 - alpha) * v
        out.append(s)
    return out
