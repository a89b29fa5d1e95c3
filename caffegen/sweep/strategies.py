"""The samplers and pruners a ``[search]`` table names, as registries (Optuna's own, and caffegen's noise pruner):
what the live sweep's study (:mod:`.search`) and the tune's replay (:mod:`caffegen.tune.replay`) both build."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InputError

if TYPE_CHECKING:
    from .search import SearchSpec

__all__ = ["SAMPLERS", "PRUNERS", "RunShape", "make_sampler", "make_pruner", "optuna_or_error"]


def optuna_or_error():
    """The optuna module, or the one line that says how to get it."""
    try:
        import optuna
    except ImportError:
        raise InputError("[search] needs Optuna: pip install 'caffegen[search]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _random(spec: SearchSpec, seed: int):
    return optuna_or_error().samplers.RandomSampler(seed=seed)


def _tpe(spec: SearchSpec, seed: int):
    startup = {} if spec.startup is None else {"n_startup_trials": spec.startup}
    # constant_liar: trials are asked while others run
    return optuna_or_error().samplers.TPESampler(seed=seed, constant_liar=True, **startup)


def _qmc(spec: SearchSpec, seed: int):
    # a scrambled sequence: its points come in order, so the seed stays the spec's
    return optuna_or_error().samplers.QMCSampler(seed=spec.seed, scramble=True)


# [search] sampler: name -> (spec, seed) -> an Optuna sampler. The grid enqueues every trial with its point (nothing
# is sampled: a random sampler stands by).
SAMPLERS: dict[str, Callable[[SearchSpec, int], Any]] = {"grid": _random, "random": _random, "tpe": _tpe, "qmc": _qmc}


def make_sampler(spec: SearchSpec, made: int = 0):
    """The sampler, seeded from the spec's seed and the number of trials the study already ``made``: a resumed
    study draws on from where it was, not the first draws again (they would repeat its first trials)."""
    return SAMPLERS[spec.sampler](spec, spec.seed + 7919 * made)


@dataclass(frozen=True)
class RunShape:
    """What a pruner needs to know of the sweep's runs: their length, test interval, the images a test pass
    evaluates, and, for a trial's parameters, the decades of lr decay its schedule still has ahead at an iteration."""

    max_iter: int
    test_interval: int
    test_images: int | None
    decay_left: Any = None    # Callable[[dict, int], float]


def _noise(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):  # noqa: ARG001
    from .pruning import NoisePruner

    if shape is None:
        raise InputError("[search] pruner \"noise\" needs the runs' shape (max_iter, test_interval)")
    return NoisePruner(max_iter=shape.max_iter, test_interval=shape.test_interval, min_resource=spec.min_resource,
                       eta=spec.reduction_factor, maximize=maximize, test_images=shape.test_images,
                       decay_left=shape.decay_left or (lambda params, it: 0.0), seed_sd=spec.seed_sd or 0.0)


def _asha(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):  # noqa: ARG001
    return optuna_or_error().pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource or min_resource,
                                                             reduction_factor=spec.reduction_factor)


def _hyperband(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):  # noqa: ARG001
    return optuna_or_error().pruners.HyperbandPruner(min_resource=spec.min_resource or min_resource,
                                                     reduction_factor=spec.reduction_factor)


def _median(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):  # noqa: ARG001
    return optuna_or_error().pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=spec.min_resource or min_resource)


def _nop(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):  # noqa: ARG001
    return optuna_or_error().pruners.NopPruner()


# [search] pruner: name -> (spec, min_resource, maximize, the runs' shape) -> an Optuna pruner ("noise":
# caffegen.sweep.pruning.NoisePruner; the others Optuna's own).
PRUNERS: dict[str, Callable[[SearchSpec, int, bool, RunShape | None], Any]] = {
    "none": _nop, "noise": _noise, "asha": _asha, "hyperband": _hyperband, "median": _median}


def make_pruner(spec: SearchSpec, min_resource: int, maximize: bool, shape: RunShape | None):
    """The study's pruner (Optuna's, or caffegen's noise pruner): what the live sweep and the tune's replay
    (:mod:`caffegen.tune.replay`) both use."""
    return PRUNERS[spec.pruner](spec, min_resource, maximize, shape)
