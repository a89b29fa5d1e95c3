"""The render and validate stages: options -> prototxt text -> checked files.

* :mod:`.options`     NetOptions / SolverOptions (every knob, its default and help), variant names;
* :mod:`.knobs`       a knob (a field with its help, shown default and lowest value) and the merge of every
  schedule's knobs into the solver's fields;
* :mod:`.schedule`    Caffe's lr policies in Python (the math of ``SGDSolver::GetLearningRate``) and their defaults;
* :mod:`.policies`    Caffe's seven lr policies as plug-ins (a module each, a registry) that :mod:`.schedule` reads;
* :mod:`.chains`      the schedules Caffe lacks, as chains of pieces of its own policies (pure): what every caller
  uses, read from :mod:`.chained`;
* :mod:`.chained`     the schedules Caffe lacks as plug-ins (a module each, a registry);
* :mod:`.render`      the Jinja templates (``templates/``) -> text, pure;
* :mod:`.text`        strings escaped for prototxt;
* :mod:`.validate`    caffe_pb2 schema and pycaffe shape checks;
* :mod:`.files`       render + validate + write (a variant, a solver set), and test_iter from the val list;
* :mod:`.usernet`     your own train_val: its data layers wired, classifier resized, heads;
* :mod:`.netread`     reading a net: load, a layer's phases, its data layers;
* :mod:`.shapes`      a net's spatial sizes at an input side (Caffe's output-size rules), the crop check;
* :mod:`.deploy`      a net's deploy form (Netscope, pycaffe), an LMDB's shape;
* :mod:`.basesolver`  your own solver.prototxt as the base of a sweep's solvers;
* :mod:`.netscope`    the deploy-form export for Netscope.

    from caffegen.prototxt import NetOptions, SolverOptions, write_variant
    write_variant("runs/lr0.01", NetOptions(), SolverOptions(base_lr=0.01, lr_policy="poly"))
"""
from .files import Written, resolve_test_iter, write_solver_set, write_variant
from .options import SOLVER_TYPES, NetOptions, SolverOptions, variant_name
from .render import render_deploy, render_net, render_solver
from .chains import parse_schedules
from .schedule import POLICIES
from .text import prototxt_string

__all__ = ["NetOptions", "SolverOptions", "SOLVER_TYPES", "POLICIES", "Written", "parse_schedules", "prototxt_string",
           "render_deploy", "render_net", "render_solver", "resolve_test_iter", "variant_name", "write_solver_set",
           "write_variant"]
