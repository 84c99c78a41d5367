"""`trm serve`: the local web page and JSON API of trm.serve (docs/serve.md)."""

from __future__ import annotations

import sys

from ..runtime import pick_device
from ..serve import Limits, Models, default_models_dir, make_server
from .common import UserError


def add_parsers(sub) -> None:
    sp = sub.add_parser("serve", help="a local web page that shows a checkpoint solving, step by step")
    sp.add_argument("--checkpoint", action="append", default=[], metavar="RUN",
                    help="a run or checkpoint directory, or a folder of runs; repeat for several (the page's "
                    "model picker lists them). Default: the repository's models/ folder")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only; the server has no authentication)")
    sp.add_argument("--port", type=int, default=8000, help="port (0 = a free one; the URL is printed)")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--max-K", type=int, default=Limits.K, help=f"most rollouts per request (default {Limits.K})")
    sp.add_argument("--max-D", type=int, default=Limits.D, help=f"most supervision steps (default {Limits.D})")
    sp.add_argument("--quiet", action="store_true", help="no request log")
    sp.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    paths = args.checkpoint
    if not paths:
        found = default_models_dir()
        if found is None:
            raise UserError("give --checkpoint RUN (repeatable, or a folder of runs); there is no models/ folder "
                            "with checkpoints here")
        paths = [found]
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, not {args.port}")
    if args.max_K < 1 or args.max_D < 1:
        raise UserError("--max-K and --max-D must be >= 1")
    models = Models(paths, pick_device(args.device))
    try:
        server = make_server(models, args.host, args.port, limits=Limits(K=args.max_K, D=args.max_D),
                             quiet=args.quiet)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    host, port = server.server_address[:2]
    print(f"trm serve: http://{host}:{port}/  ({len(models.entries)} model{'s' * (len(models.entries) != 1)}: "
          f"{', '.join(models.entries)}); Ctrl-C stops", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"trm serve: warning: bound to {args.host}, reachable from other machines, without authentication",
              file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
