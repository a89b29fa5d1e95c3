"""The report stage: a sweep folder -> the verdict (:mod:`.analysis`), the diagnosis of each run
(:mod:`.diagnose`), the figures (:mod:`.figures`) and the files (:mod:`.writers`).

    from caffegen.report import write_report
    write_report("runs/default")     # report.html, report.md, summary.csv
"""
from .writers import write_report

__all__ = ["write_report"]
