"""Shared fixtures: the real Caffe (never a fake) and tiny generated image sets for it to train on (the helpers the
tests import are in helpers.py)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from caffegen.errors import CaffeNotFound
from helpers import make_imageset, write_list
from ray_cluster import LocalCluster

# CI machines are shared: slow example generation under load is not a bug, so it must not fail a run.
settings.register_profile("caffegen", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("caffegen")


@pytest.fixture(scope="session")
def caffe_install():
    """The real Caffe caffegen would use. Missing Caffe fails the test: run `make caffe` first."""
    from caffegen.toolchain import locate

    try:
        return locate()
    except CaffeNotFound as exc:
        pytest.fail(f"real Caffe required: {exc}")


@pytest.fixture(scope="session")
def tiny_imageset(tmp_path_factory):
    """3 classes x 8 JPEGs of 40x30 plus train/val list files with absolute paths."""
    root = tmp_path_factory.mktemp("tinyset")
    items = make_imageset(root)
    train = write_list(root / "train.txt", items)
    val = write_list(root / "val.txt", items[::4])
    return {"root": root, "train": train, "val": val, "classes": 3, "items": items}


@pytest.fixture(scope="session")
def cluster():
    """A real two-node Ray cluster on 127.0.0.1 (one CPU each; tests/ray_cluster.py), one for the session: this
    process joins it as a driver, and Ray reads a cluster's auth token once per process. A test that kills a node
    starts a new worker before it returns, and each test first makes sure the cluster has its worker."""
    import os

    c = LocalCluster(cpus_per_node=1)
    try:
        os.environ.update(c.auth)     # before Ray is imported here: it reads the auth mode once (stop() takes it out)
        pytest.importorskip("ray")    # (the test without Ray needs no cluster)
        c.start(workers=1)
        yield c
    finally:
        c.stop()
        assert not c.leftovers(), c.leftovers()
