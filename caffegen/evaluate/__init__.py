"""Evaluate a trained run: its snapshot scored image by image, per-class measures, PR/ROC curves, a gallery."""
from .evaluation import Evaluation, evaluate_run, evaluate_sweep

__all__ = ["Evaluation", "evaluate_run", "evaluate_sweep"]
