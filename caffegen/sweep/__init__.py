"""The sweep engine: a spec's variants run in parallel slots, resumable, with a store.

* :mod:`.spec`       the TOML spec -> :class:`~.spec.SweepSpec` and its variants (every value typed and checked);
* :mod:`.runs`       a variant made concrete: :class:`~.runs.RunPlan` (the template net or your own net wired);
* :mod:`.planning`   the data prepared once, every plan checked once, where the runs come from (grid or study);
* :mod:`.chain`      a run of a chained schedule: its segments, each a Caffe policy, one caffe after another;
* :mod:`.driver`     the event loop: launch in slots, step each run, record, the live report;
* :mod:`.leftovers`  one writer per run folder: what an earlier, dead driver left training;
* :mod:`.search`     the ``[search]`` table, the Optuna study in ``sweep.db`` and its trials as runs;
* :mod:`.strategies` the samplers and pruners a ``[search]`` names (registries: Optuna's, and the noise pruner);
* :mod:`.ranges`     a ``[search.space]``'s Optuna distributions, and a range that follows the evidence;
* :mod:`.pruning`    the noise pruner: successive halving that cuts only beyond the noise, like with like;
* :mod:`.store`      ``sweep.db`` (one row per run), the spec record, the lock, and the rebuild of a damaged store;
* :mod:`.progress`   what a sweep shows: one view per run, the live table, ``caffegen status``;
* :mod:`.values`     a spec value typed by its field's annotation (one error line naming the key).
"""
from .spec import RunSettings, SweepSpec, Variant, expand, load_spec, parse_spec

__all__ = ["RunSettings", "SweepSpec", "Variant", "expand", "load_spec", "parse_spec"]
