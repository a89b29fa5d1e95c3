"""caffegen: render, validate, run, parse and report Caffe tuning sweeps on the real Caffe.

Importing this package is cheap: nothing here imports pycaffe; :mod:`caffegen.toolchain` does that
on demand. One package per pipeline stage, top to bottom as they may import (docs/architecture.md):

* :mod:`.cli`, :mod:`.commands`  the ``caffegen`` command: Click commands that wrap the library;
* :mod:`.tune`       ``caffegen tune``: measure, sanity, lr-find, search, confirm, final, look; its replay;
* :mod:`.export`     TensorBoard event files of a sweep;
* :mod:`.evaluate`   a run's snapshot scored image by image; :mod:`.probes`: sanity, lr-find, extend, timing;
  :mod:`.doctor`: is this Caffe usable;
* :mod:`.report`     a sweep's ranked, diagnosed summary, its figures;
* :mod:`.sweep`      the spec, the driver, the store, the Optuna search;
* :mod:`.run`        one way to run a caffe (the trainer, the executors, stop rules, run folders);
* :mod:`.data`, :mod:`.prototxt`  lists, demo data, LMDBs; rendering, validating and reading prototxt;
* :mod:`.toolchain`  building and finding Caffe; :mod:`.logs`: training logs -> curves;
* :mod:`.plotting`, :mod:`.checks`, :mod:`.cc`, :mod:`.layout`, :mod:`.paths`, :mod:`.errors`: what every
  stage shares (figures, value checks, the C compiler, file names, file operations, the errors users see).
"""
__version__ = "0.1.0"
