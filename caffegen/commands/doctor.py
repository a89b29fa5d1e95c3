"""``caffegen doctor`` and ``caffegen build-caffe``."""
from __future__ import annotations

import click

from ..run.backends import BACKENDS


@click.command()
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="local", show_default=True,
              help="ray: check every node of a Ray cluster instead of this machine.")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="With --backend ray: the cluster [default: $RAY_ADDRESS, else a local Ray instance].")
def doctor(backend: str, address: str | None) -> int:
    """Check that the Caffe caffegen would drive is usable.

    \b
    Reports the caffe binary, its version and where it came from
    (CAFFEGEN_CAFFE_BIN, CAFFE_ROOT, caffegen's cache, or PATH), whether
    caffe_pb2 and pycaffe import and run a CPU forward pass, the build's
    GPU support and the GPUs seen, the BLAS library, and the cache path.

    \b
    --backend ray runs one task on each node of the Ray cluster (pinned
    there): the Caffe found on it, its version, the GPUs it sees, and a
    table of the nodes with their CPUs and GPUs. Exit 1 when a node has no
    Caffe or the versions differ (docs/cluster.md).

    Exit 0 when Caffe is usable; otherwise 1, after one line per problem
    with its fix on stderr.
    """
    if address is not None and backend != "ray":
        from ..errors import InputError

        raise InputError("doctor: --address is the address of a Ray cluster: it needs --backend ray")
    if backend == "ray":
        from ..doctor import cluster_report

        report = cluster_report(address)
        click.echo(report.table())
        for line in report.problems():
            click.echo(f"caffegen: error: {line}", err=True)
        return 1 if report.problems() else 0
    from ..doctor import format_checks, problems, run_checks, usable

    checks = run_checks()
    click.echo(format_checks(checks))
    if usable(checks):
        return 0
    for line in problems(checks):
        click.echo(f"caffegen: error: {line}", err=True)
    return 1


@click.command("build-caffe")
@click.option("--force", is_flag=True, help="Rebuild even when the cache already holds this build.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Parallel compile jobs [default: all cores].")
@click.option("--no-apt", is_flag=True, help="Do not install missing Debian build packages.")
@click.option("--gpu/--cpu", default=None,
              help="CUDA or CPU-only build [default: CUDA when nvcc and a GPU are present; CAFFE_GPU=1 forces it].")
def build_caffe(force: bool, jobs: int | None, no_apt: bool, gpu: bool | None) -> int:
    """Fetch, fix and build Caffe into ~/.cache/caffegen/caffe/<key> (what `make caffe` runs).

    \b
    The source is the PyPI sdist brocolli-caffe==9.0.2 (Caffe 1.0), checked
    against a pinned sha256, patched by caffegen's fix-set and built with
    caffegen's CMakeLists.txt. The key hashes source + fixes + flags, so a
    second run reuses the build (seconds). About 5-8 minutes on 2 cores
    for the CPU build, about 11 (idle cores) to 23 (busy) for --gpu.
    Also links pycaffe into the running virtualenv (a .pth file).
    """
    import os

    from ..toolchain import build as b

    argv = []
    if force:
        argv.append("--force")
    if jobs:
        argv += ["--jobs", str(jobs)]
    if no_apt:
        argv.append("--no-apt")
    if gpu is not None:
        os.environ["CAFFE_GPU"] = "1" if gpu else "0"
    return b.main(argv)

