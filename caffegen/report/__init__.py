"""The report stage: a sweep folder -> a ranked, diagnosed verdict and its files.

* :mod:`.analysis`  runs grouped into variants, the ranking (in the metric's direction), the verdict and its ties;
* :mod:`.stats`     intervals and the tests that say whether two variants differ;
* :mod:`.diagnose`  findings per run (diverged, stalled, still improving, overfitting) with advice;
* :mod:`.figures`   every figure of the report (curves, lr, heatmap, Optuna's views) and ``caffegen schedule``'s;
* :mod:`.writers`   report.html, report.md, summary.csv, the live report.

    from caffegen.report import write_report
    write_report("runs/default")     # report.html, report.md, summary.csv
"""
from .writers import write_report

__all__ = ["write_report"]
