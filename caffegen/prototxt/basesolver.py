"""A user's ``solver.prototxt`` as the base of a sweep's solvers.

The base gives every field the sweep does not set: the fields caffegen knows (:class:`SolverOptions`) become the
variants' defaults (:func:`base_options`), and every other field it holds (``clip_gradients``,
``regularization_type``, ``test_initialization``...) is carried into each written solver unchanged
(:func:`merge`). The sweep always owns ``net``, ``snapshot``, ``snapshot_prefix``, ``solver_mode`` and
``device_id``.

Policy parameters (gamma, stepsize, stepvalue, power) belong to the base's own ``lr_policy``: a variant of that
policy inherits them; a variant of another policy gets that policy's derived defaults (a step policy's gamma 0.1
would make ``exp`` fall tenfold per iteration).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import InputError
from .options import SolverOptions
from .chains import resolve_schedule
from .schedule import POLICY_PARAMS, resolve_policy

__all__ = ["load_solver", "base_options", "merge", "solver_fields", "repeated", "variant_solver", "OWNED"]

OWNED = ("net", "snapshot", "snapshot_prefix", "solver_mode", "device_id")  # set by the sweep, never by the base
_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")  # the deprecated solver_type enum's order
_POLICY_FIELDS = {f for fields in POLICY_PARAMS.values() for f in fields}
# SolverParameter fields that name another net or file: a base solver's are replaced by the sweep's net
_NET_FIELDS = ("net", "net_param", "train_net", "test_net", "train_net_param", "test_net_param", "train_state",
               "test_state")


def load_solver(path: str | Path):
    """The SolverParameter in ``path``; one error line (with line:column) when it is not a Caffe solver."""
    from .validate import parse_file

    return parse_file(path, "solver")


def repeated(desc) -> bool:
    """Whether a protobuf field is repeated (``is_repeated`` in protobuf >= 5, ``label`` before)."""
    return desc.is_repeated if hasattr(desc, "is_repeated") else desc.label == desc.LABEL_REPEATED


def solver_fields() -> dict[str, Any]:
    """Caffe's SolverParameter fields by name (their descriptors): what a base solver or a grid axis may set."""
    from ..toolchain import caffe_pb2

    return dict(caffe_pb2().SolverParameter.DESCRIPTOR.fields_by_name)


def base_options(msg, lr_policy: str | None = None) -> dict[str, Any]:
    """SolverOptions fields the base sets, for a variant of ``lr_policy`` (None: the base's own policy)."""
    known = {f.name for f in dataclasses.fields(SolverOptions)} - set(OWNED)
    out: dict[str, Any] = {}
    for desc, value in msg.ListFields():
        name = desc.name
        if name == "solver_type" and not msg.HasField("type"):
            out["type"] = _TYPES[value]
        elif name == "test_iter":
            out["test_iter"] = value[0]
        elif name == "stepvalue":
            out["stepvalue"] = tuple(value)
        elif name in known:
            out[name] = _float32_text(value) if desc.type == desc.TYPE_FLOAT else value
    base_policy = resolve_policy(msg.lr_policy) if msg.HasField("lr_policy") else None
    if lr_policy is not None and base_policy is not None and resolve_schedule(lr_policy) != base_policy:
        for name in _POLICY_FIELDS:
            out.pop(name, None)
    return out


def _float32_text(value: float) -> float:
    """A protobuf float field as the number its text said (0.1, not 0.10000000149011612): the shortest decimal
    that rounds to the same float32."""
    import numpy as np

    return float(str(np.float32(value)))


def merge(ours: str, base, extras: dict[str, Any] | None = None) -> str:
    """Our rendered solver text over the base: fields ours sets replace the base's (policy parameters as a group,
    so a step base's stepsize never lingers in a poly solver), the base's other fields stay, then ``extras``
    (grid or spec values for fields SolverOptions does not know) are set."""
    from google.protobuf import text_format

    from .validate import parse_text

    out = parse_text(ours, "solver")
    if base is not None:
        merged = type(out)()
        merged.CopyFrom(base)
        for name in (*_POLICY_FIELDS, *_NET_FIELDS, "solver_type", "test_iter",
                     *(d.name for d, _ in out.ListFields())):
            merged.ClearField(name)
        merged.MergeFrom(out)
        out = merged
    for name, value in (extras or {}).items():
        desc = out.DESCRIPTOR.fields_by_name[name]
        try:
            if repeated(desc):
                out.ClearField(name)
                getattr(out, name).extend(value if isinstance(value, (list, tuple)) else [value])
            elif desc.enum_type is not None and isinstance(value, str):
                setattr(out, name, desc.enum_type.values_by_name[value.upper()].number)
            else:
                setattr(out, name, value)
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"solver field {name} = {value!r}: {exc}") from None
    return text_format.MessageToString(out)


def variant_solver(values: dict[str, Any], base=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A variant's solver values split into SolverOptions keyword arguments (over the base's, when given) and the
    extra SolverParameter fields that SolverOptions does not know (set by :func:`merge`)."""
    known = {f.name for f in dataclasses.fields(SolverOptions)}
    options = base_options(base, values.get("lr_policy")) if base is not None else {}
    options.update({k: v for k, v in values.items() if k in known})
    return options, {k: v for k, v in values.items() if k not in known}
