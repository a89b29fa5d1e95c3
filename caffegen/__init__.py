"""caffegen: render, validate, run, parse and report Caffe tuning sweeps on the real Caffe.

Importing this package is cheap: nothing here imports pycaffe; :mod:`caffegen.toolchain` does that
on demand.
"""
__version__ = "0.1.0"
