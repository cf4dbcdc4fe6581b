"""``clipsearch health``: exit 0 when every named service reports SERVING (probes, scripts)."""

from __future__ import annotations

import argparse
import sys


def add(commands: argparse._SubParsersAction) -> None:
    health = commands.add_parser("health", help="exit 0 when the given services report SERVING")
    health.add_argument("--encoder", metavar="HOST:PORT")
    health.add_argument("--index", metavar="HOST:PORT")
    health.add_argument("--gateway", metavar="HOST:PORT")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    from clipsearch.health import check_health

    given = (("encoder", args.encoder), ("index", args.index), ("gateway", args.gateway))
    targets = {name: address for name, address in given if address}
    if not targets:
        print("error: give --encoder, --index and/or --gateway", file=sys.stderr)
        return 2
    healthy = True
    for name, address in targets.items():
        status = check_health(address, timeout_s=args.timeout)
        print(f"{name} {address}: {status}")
        healthy &= status == "SERVING"
    return 0 if healthy else 1
