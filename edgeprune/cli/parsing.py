"""The parts of ``register(subparsers)`` that every subcommand shares."""

from __future__ import annotations

import argparse
from typing import Callable


def add_command(sub: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
                help: str, description: str | None = None, raw: bool = False) -> argparse.ArgumentParser:
    """Add subcommand ``name`` that calls ``run(args)``; ``raw`` keeps the description's line breaks
    (a module docstring laid out by hand)."""
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    p = sub.add_parser(name, help=help, description=description, formatter_class=formatter)
    p.set_defaults(func=run)
    return p


def add_run_config(p: argparse.ArgumentParser, described_in: str, fresh_help: str) -> None:
    """The YAML config of a resumable run (its format described in module ``described_in``) and --fresh."""
    p.add_argument("config", help=f"YAML config (see {described_in})")
    p.add_argument("--fresh", action="store_true", help=fresh_help)
