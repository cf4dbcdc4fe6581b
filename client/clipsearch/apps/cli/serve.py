"""``clipsearch serve encoder|index|gateway``: the servers, each behind its extra."""

from __future__ import annotations

import argparse
import importlib

from clipsearch.apps.cli.common import require_extra

#: service -> (help, settings module:class, run module:function, extra)
SERVERS = {
    "encoder": (
        "the CLIP encoder service",
        "encoder_service.settings:EncoderSettings",
        "encoder_service.server:run",
        "encoder",
    ),
    "index": (
        "the FAISS index service",
        "index_service.settings:IndexSettings",
        "index_service.server:run",
        "index",
    ),
    "gateway": (
        "SearchService: the composed calls for other-language backends",
        "clipsearch.apps.gateway.settings:GatewaySettings",
        "clipsearch.apps.gateway.server:run",
        "gateway",
    ),
}


def load(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run a server")
    which = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for service, (help_text, settings, _, _) in SERVERS.items():
        parser = which.add_parser(service, help=help_text)
        load(settings).add_arguments(parser)  # settings modules are standard library only
        parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    _, settings, run, extra = SERVERS[args.service]
    require_extra(extra, f"serve {args.service}")
    return load(run)(load(settings).from_args(args))
