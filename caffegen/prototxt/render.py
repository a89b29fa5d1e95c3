"""Templates -> prototxt text, purely: options in, text out.

The templates in ``templates/`` (shipped as the package data ``caffegen.templates``; ``CAFFEGEN_TEMPLATES``
points elsewhere) are data; this module only builds their context from checked options
(:class:`~caffegen.prototxt.options.NetOptions`, :class:`~caffegen.prototxt.options.SolverOptions`). Every string
a template writes goes through the ``q`` filter (:func:`~caffegen.prototxt.text.prototxt_string`), every number
through ``num``. Reading files and writing them is :mod:`caffegen.prototxt.files`' business.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..logs.curves import accuracy_name
from ..paths import package_file
from .options import NetOptions, SolverOptions
from .text import prototxt_bool, prototxt_number, prototxt_string

__all__ = ["template_dir", "net_context", "solver_context", "render_net", "render_deploy", "render_solver"]


def template_dir() -> Path:
    """``$CAFFEGEN_TEMPLATES``, else the templates shipped with caffegen."""
    return Path(os.environ.get("CAFFEGEN_TEMPLATES") or package_file("caffegen.templates"))


@functools.lru_cache(maxsize=4)
def _env(folder: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(q=prototxt_string, num=prototxt_number, pbool=prototxt_bool)
    return env


def _render(template: str, **context: Any) -> str:
    import jinja2

    folder = template_dir()
    try:
        return _env(str(folder)).get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template {exc.name} not found in {folder} (set CAFFEGEN_TEMPLATES)") from None


def net_context(opts: NetOptions) -> dict[str, Any]:
    """What the net templates see: the options plus the derived layer list, pool and data layers."""
    convs, bottom = [], "data"
    for i, width in enumerate(opts.conv_widths, start=1):
        convs.append({"name": f"conv{i}", "bottom": bottom, "num_output": width,
                      "relu": f"relu{i}", "bn": f"bn{i}", "scale": f"scale{i}"})
        bottom = f"conv{i}"
    layer_type = "ImageData" if opts.backend == "imagedata" else "Data"
    data = [
        {"phase": "TRAIN", "type": layer_type, "mirror": opts.mirror, "source": opts.train_source,
         "batch": opts.train_batch, "shuffle": True, "resize": opts.resize},
        {"phase": "TEST", "type": layer_type, "mirror": False, "source": opts.val_source,
         "batch": opts.test_batch, "shuffle": False, "resize": opts.test_resize},
    ]
    ctx = opts.to_dict()
    ctx.update(convs=convs, data=data, accuracy=[{"k": k, "name": accuracy_name(k)} for k in opts.top_k],
               pool={"name": opts.pool_name, "bottom": bottom, "kernel": opts.pool_kernel},
               drop_name=f"drop{len(opts.conv_widths)}")
    return ctx


def render_net(opts: NetOptions | None = None) -> str:
    """train_val.prototxt text (the seed's net at defaults)."""
    return _render("train_val.prototxt.j2", net=net_context(opts or NetOptions()))


def render_deploy(opts: NetOptions | None = None) -> str:
    """deploy.prototxt text: Input [1, 3, crop, crop] -> ... -> fc -> Softmax ``prob``."""
    return _render("deploy.prototxt.j2", net=net_context(opts or NetOptions()))


def solver_context(opts: SolverOptions, net: NetOptions | None = None) -> dict[str, Any]:
    """What solver.prototxt.j2 sees: :meth:`SolverOptions.effective` (an unset test_iter: the seed's fallback for
    ``net``'s TEST batch; ``caffegen.prototxt.files`` derives it from the val list before rendering)."""
    return opts.effective(test_batch=(net or NetOptions()).test_batch)


def render_solver(opts: SolverOptions | None = None, net: NetOptions | None = None) -> str:
    """solver.prototxt text."""
    return _render("solver.prototxt.j2", s=solver_context(opts or SolverOptions(), net))
