"""Export the net for other tools. Netscope (ethereon.github.io/netscope) draws a prototxt and infers
every blob shape, but only from a deploy-form net: its shape inference knows Input/Data, Convolution,
Pooling, InnerProduct, Concat, Eltwise and treats other types as shape-preserving, so an Accuracy layer
(two bottoms) or phase-specific data layers break the picture. The deploy net already has that form:
Input [1, 3, crop, crop], the trunk, fc and a Softmax ``prob``, with nothing phase-specific.
"""
from __future__ import annotations

from .options import NetOptions
from .render import render_deploy


def netscope(opts: NetOptions | None = None) -> str:
    """Deploy-form prototxt that Netscope renders with every shape inferred and pycaffe loads."""
    return render_deploy(opts or NetOptions())
