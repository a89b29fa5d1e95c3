"""The expert workflow in one command: ``caffegen tune`` (sanity, lr-find, search, confirm, final, look).

* :mod:`.tuner`   the stages, in order, each an ordinary sweep or probe, resumable (``tune.json``);
* :mod:`.budget`  ``--budget`` parsed and split over the stages from this net's measured speed; the plan;
* :mod:`.specs`   the spec of each stage as TOML tables (written into the tune folder);
* :mod:`.state`   ``tune.json``: the decisions and what each stage spent;
* :mod:`.report`  the tune's own report: the plan, each stage's decision, the bill, the links.
"""
from .tuner import TuneOptions, TuneResult, tune

__all__ = ["TuneOptions", "TuneResult", "tune"]
