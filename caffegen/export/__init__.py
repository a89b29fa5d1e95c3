"""Exports of a sweep for the field's own viewers.

* :mod:`.tensorboard`  a sweep (or one run) as a TensorBoard log dir: scalars, HParams, PR curves of evaluate.

(The Netscope export of a net is the prototxt stage's: :mod:`caffegen.prototxt.netscope`.)
"""
