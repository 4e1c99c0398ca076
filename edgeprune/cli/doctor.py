"""``edgeprune doctor``: what this machine has for edgeprune."""

from __future__ import annotations

import argparse
import os
import platform

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "doctor", run,
                    help="show installed runtimes, CPU, torch, threads and the Ray cluster")
    p.add_argument("--ray-address", default="auto", metavar="ADDR",
                   help="the Ray cluster to check (default: auto, the one a run with address auto joins)")


def run(args: argparse.Namespace) -> int:
    from edgeprune import __version__
    from edgeprune.runtimes.environment import cpu_model
    from edgeprune.runtimes.registry import RUNTIMES, sdk_version

    print(f"edgeprune {__version__}  python {platform.python_version()}  {platform.platform()}")
    print(f"cpu: {cpu_model()}  cores: {os.cpu_count()}")
    try:
        import torch

        print(f"torch: {torch.__version__}  threads: {torch.get_num_threads()}")
    except ImportError:
        print("torch: missing (needed on the host for pruning; not on devices)")
    print("runtimes:")
    for name, entry in RUNTIMES.items():
        version = sdk_version(name)
        if version is None:
            print(f"  {name:<12} missing   install: pip install 'edgeprune[{entry.extra}]'")
        else:
            print(f"  {name:<12} {version}")
    print_ray(getattr(args, "ray_address", "auto"))
    return 0


def print_ray(address: str) -> None:
    """The Ray cluster a run would use; joins a running one to count its nodes, never starts one."""
    from importlib.util import find_spec

    from edgeprune.errors import EdgepruneError
    from edgeprune.iterative.ray_executor import probe_cluster, resolve_address

    if find_spec("ray") is None:
        print("ray: missing (for sensitivity on a cluster)  install: pip install 'edgeprune[ray]'")
        return
    from importlib.metadata import version

    print(f"ray: {version('ray')}")
    addr, source = resolve_address(address)
    if addr is None:
        print(f"  cluster: {source}")
        return
    print(f"  cluster: {addr}  (from {source})")
    try:
        info = probe_cluster(addr)
    except EdgepruneError as exc:
        print(f"  not reachable: {exc}")
        return
    print(f"  {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs "
          f"(sensitivity tasks {'use 1 GPU each' if info['gpus'] else 'run on CPUs'})")
