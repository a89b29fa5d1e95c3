"""The expert workflow in one command: ``caffegen tune`` (sanity, lr-find, search, confirm, final, look).

* :mod:`.tuner`   the tune: its data, net and lengths, then the stages in order, resumable (``tune.json``);
* :mod:`.stages`  one object per stage (measure, sanity, lr-find, search, confirm, final, look);
* :mod:`.decisions` what each stage decided, typed: saved to and read from ``tune.json``;
* :mod:`.budget`  ``--budget`` parsed and split over the stages from this net's measured speed; the plan;
* :mod:`.specs`   the spec of each stage as TOML tables (written into the tune folder);
* :mod:`.confirm` the confirm stage's rounds of fresh seeds on real runs, and the repeated grid's verdict;
* :mod:`.decide`  the decisions, pure: the candidates, the confirm rule, the choice (the replay calls them too);
* :mod:`.state`   ``tune.json``: the decisions and what each stage spent;
* :mod:`.report`  the tune's own report: the answer first, the plan, each stage's decision, the bill, the links;
* :mod:`.figures` the report's pictures: the trials, the confirm values, the final curves, best so far, the lr;
* :mod:`.table`   recorded learning curves of a problem (a tabular benchmark, ``bench/tables``);
* :mod:`.clock`   what a replay is made of: the methods, the virtual clock, one search run on it;
* :mod:`.replay`  the tune's own decisions replayed on a table on that clock;
* :mod:`.baselines` random search, TPE + ASHA / Hyperband, the one-seed grid, lr-find + poly on the same clock.
"""
from .tuner import TuneOptions, TuneResult, tune

__all__ = ["TuneOptions", "TuneResult", "tune"]
