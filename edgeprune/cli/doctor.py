"""``edgeprune doctor``: what this machine has for edgeprune."""

from __future__ import annotations

import argparse
import os
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="show installed runtimes, CPU, torch and threads")
    p.set_defaults(func=run)


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
    return 0
