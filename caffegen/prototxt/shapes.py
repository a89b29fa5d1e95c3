"""A net's spatial sizes at a given input side, by Caffe's own output-size rules (Convolution, Deconvolution,
Pooling), and the check that a net can train at a smaller crop (pure: values in, values or one error line out)."""
from __future__ import annotations

import math

from ..errors import InputError
from .netread import is_data, phases

__all__ = ["spatial_sizes", "check_input_size"]


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def _pool_out(size: int, k: int, s: int, p: int) -> int:
    """Caffe's PoolingLayer::Reshape: ceil, then one less when the last window would start in the padding."""
    out = int(math.ceil((size + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


def _dim(values, single: int, default: int) -> int:
    return int(values[0]) if len(values) else (int(single) if single else default)


def spatial_sizes(net, side: int) -> tuple[dict[str, tuple[int, int]], tuple[str, str, tuple[int, int]] | None]:
    """The TEST net's blob heights and widths for a side x side input (Caffe's own output-size rules for
    Convolution, Deconvolution and Pooling; other layers keep their first input's), and the first layer whose
    output would be empty ((name, type, size)), if any. An InnerProduct's output is not spatial."""
    sizes: dict[str, tuple[int, int]] = {}
    test = [layer for layer in net.layer if "TEST" in phases(layer)]
    for layer in test:
        if is_data(layer):
            for top in layer.top[:1]:
                sizes[top] = (side, side)
            continue
        src = sizes.get(layer.bottom[0]) if layer.bottom else None
        if src is None or layer.type in ("InnerProduct", "Embed"):
            continue
        h, w = src
        if layer.type in ("Convolution", "Deconvolution"):
            c = layer.convolution_param
            kh, kw = (c.kernel_h, c.kernel_w) if c.HasField("kernel_h") else (_dim(c.kernel_size, 0, 1),) * 2
            sh, sw = (c.stride_h, c.stride_w) if c.HasField("stride_h") else (_dim(c.stride, 0, 1),) * 2
            ph, pw = (c.pad_h, c.pad_w) if c.HasField("pad_h") else (_dim(c.pad, 0, 0),) * 2
            d = _dim(c.dilation, 0, 1)
            if layer.type == "Convolution":
                out = (_conv_out(h, kh, sh, ph, d), _conv_out(w, kw, sw, pw, d))
            else:
                out = ((h - 1) * sh - 2 * ph + d * (kh - 1) + 1, (w - 1) * sw - 2 * pw + d * (kw - 1) + 1)
        elif layer.type == "Pooling":
            q = layer.pooling_param
            if q.global_pooling:
                out = (1, 1)
            else:
                kh, kw = (q.kernel_h, q.kernel_w) if q.HasField("kernel_h") else (q.kernel_size,) * 2
                sh, sw = (q.stride_h, q.stride_w) if q.HasField("stride_h") else (q.stride,) * 2
                ph, pw = (q.pad_h, q.pad_w) if q.HasField("pad_h") else (q.pad,) * 2
                out = (_pool_out(h, kh, sh, ph), _pool_out(w, kw, sw, pw))
        else:
            out = src
        if min(out) < 1:
            return sizes, (layer.name, layer.type, out)
        for top in layer.top:
            sizes[top] = out
    return sizes, None


def check_input_size(net, side: int, own: int | None, where: str) -> None:
    """One line when the net cannot train at ``side`` x ``side``: a layer whose output would be empty, or an
    InnerProduct whose input would change size (a fixed-size head: its weights are per input position)."""
    sizes, empty = spatial_sizes(net, side)
    if empty is not None:
        name, kind, out = empty
        raise InputError(f"{where}: [net] crop {side}: layer {name!r} ({kind}) would have no output at that size "
                         f"({out[0]}x{out[1]}): use a larger crop")
    if own is None or own == side:
        return
    before, _ = spatial_sizes(net, own)
    for layer in net.layer:
        if layer.type != "InnerProduct" or "TEST" not in phases(layer) or not layer.bottom:
            continue
        a, b = before.get(layer.bottom[0]), sizes.get(layer.bottom[0])
        if a is not None and b is not None and a != b:
            raise InputError(f"{where}: [net] crop {side}: layer {layer.name!r} (InnerProduct) reads a {a[0]}x{a[1]} "
                             f"map at the net's own {own} and {b[0]}x{b[1]} at {side}: a fixed-size head (its weights "
                             "are per position); [net] crop works for nets whose head pools globally")
