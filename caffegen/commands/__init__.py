"""Click commands, one module per pipeline stage; each wraps the library API.

* :mod:`.prototxt`  render, solvers, schedule, export netscope;
* :mod:`.data`      lists, demo-data, prepare;
* :mod:`.sweep`     sweep, status, sanity, lr-find, extend;
* :mod:`.logs`      parse, plot;
* :mod:`.report`    report, export tensorboard;
* :mod:`.evaluate`  evaluate;
* :mod:`.tune`      tune;
* :mod:`.doctor`    doctor, build-caffe;
* :mod:`.options`   the CLI options generated from the option dataclasses' fields.
"""
