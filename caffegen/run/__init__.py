"""The run stage: one way to run a caffe, for every command that starts one (sweep, extend, lr-find, sanity, tune).

* :mod:`.trainer`       the one ``caffe train`` command line and :class:`~.trainer.Training`: launch, follow, stop,
  and how it ended; :func:`~.trainer.follow` and :class:`~.trainer.StopSignals` for a single run;
* :mod:`.stops`         when to stop a run: one :class:`~.stops.StopRule` per rule (divergence, early stop, timeout,
  the pruner, the probes' loss rules);
* :mod:`.status`        a run's status names and the mapping from how caffe exited to one;
* :mod:`.folder`        a run folder on disk: its snapshots and its ``manifest.json``;
* :mod:`.executor`      where caffe runs: the :class:`~.executor.Executor` protocol and child processes here;
* :mod:`.backends`      the registry of executors ``[run] backend`` names (local, ray);
* :mod:`.ray_executor`  one Ray actor per run on a cluster, and the nodes' survey;
* :mod:`.processes`     pid + start time, and the launcher (``launcher.c``) that makes caffe die with its driver.
"""
