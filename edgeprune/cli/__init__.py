"""The ``edgeprune`` command. Each subcommand is one module here exposing ``register(subparsers)``;
adding a command means adding a module and one name to ``COMMANDS``. Heavy imports happen inside
each command's run function, so ``edgeprune --version`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from edgeprune._version import __version__
from edgeprune.errors import EdgepruneError

COMMANDS = ["demo", "doctor", "synth-data", "profile", "agent-pack", "prune", "sweep", "field-check",
            "finetune"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeprune",
        description="Prune CNN detectors, profile them on each target's runtime, pick per target.",
    )
    parser.add_argument("--version", action="version", version=f"edgeprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edgeprune.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgepruneError as exc:
        print(f"edgeprune: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file the user named cannot be read or written: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"edgeprune: error: {exc.strerror or exc}{where} (check the path and its permissions)",
              file=sys.stderr)
        return 1
    except RecursionError:
        print("edgeprune: error: an input file is nested too deeply to be read (is it the right file?)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgeprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
