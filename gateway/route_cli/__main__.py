"""`python -m gateway.route_cli train|eval|score|bench`: the route commands without the main CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.offline import prepare_offline_env
from gateway.route_cli import add_route_commands


def main(argv: Sequence[str] | None = None) -> int:
    prepare_offline_env()
    parser = argparse.ArgumentParser(prog="python -m gateway.route_cli")
    add_route_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["route", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
