"""Evaluate a trained run: its snapshot scored image by image, per-class measures, PR/ROC curves, a gallery.

* :mod:`.forward`     the TEST net rewritten to read a list in order, run by pycaffe in a child process;
* :mod:`.metrics`     confusion, per class, PR/ROC, AP/AUC, Caffe's top-k: pure numpy;
* :mod:`.evaluation`  a run's snapshot scored; a sweep's winner;
* :mod:`.result`      :class:`Evaluation`, one evaluated snapshot (what the writers write);
* :mod:`.figures`     confusion matrix, PR and ROC figures;
* :mod:`.writers`     ``eval/``: CSV, JSON, the HTML gallery.
"""
from .evaluation import evaluate_run, evaluate_sweep
from .result import Evaluation

__all__ = ["Evaluation", "evaluate_run", "evaluate_sweep"]
