"""``truto-emulator serve``: run the Truto emulator from a shell.

Binds loopback only unless ``--allow-remote`` (it accepts a well-known token and has admin routes
that can rewrite its data). Prints the base URL, token and seeded account ids on start.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from truto_airflow.emulator.config import DEFAULT_TOKEN, EmulatorConfig
from truto_airflow.emulator.server import READY_PREFIX, base_url_for, bind_socket, is_loopback

__all__ = ["build_parser", "main"]


def _rate(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*10\s*s)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError("expected N or N/10s, e.g. 50/10s")
    return int(match.group(1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="truto-emulator", description="A local Truto API.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the emulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--allow-remote", action="store_true", help="allow non-loopback --host")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--opportunities", type=int, default=300)
    serve.add_argument("--token", default=DEFAULT_TOKEN)
    serve.add_argument("--latency-ms", type=float, default=0.0)
    serve.add_argument("--latency-jitter-ms", type=float, default=0.0)
    serve.add_argument("--fault-rate", type=float, default=0.0)
    serve.add_argument("--drop-rate", type=float, default=0.0)
    serve.add_argument("--rate-limit", type=_rate, default=None, metavar="N/10s")
    serve.add_argument("--slow-rate", type=float, default=0.0)
    serve.add_argument("--slow-ms", type=float, default=0.0)
    serve.add_argument("--config-json", help=argparse.SUPPRESS)
    serve.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)
    return parser


def _config(args: argparse.Namespace) -> EmulatorConfig:
    if args.config_json:
        return EmulatorConfig.from_json(json.loads(args.config_json))
    return EmulatorConfig(
        seed=args.seed,
        opportunities=args.opportunities,
        token=args.token,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        fault_rate=args.fault_rate,
        drop_rate=args.drop_rate,
        rate_limit=args.rate_limit,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"refusing to listen on non-loopback host {args.host!r}; pass --allow-remote "
            "if you really want other machines to reach the emulator",
            file=sys.stderr,
        )
        return 2
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from truto_airflow.emulator.app import create_app
    from truto_airflow.emulator.server import uvicorn_config

    app = create_app(config)
    sock = bind_socket(args.host, args.port)
    base_url = base_url_for(sock)
    accounts = app.state.emulator.state.account_keys
    print(f"Truto emulator on {base_url}")
    print(f"  token: {config.token}")
    for key, account_id in accounts.items():
        print(f"  {key:<13} integrated_account_id={account_id}")
    print("  opportunity ids: opp-<account>-0001 ... (e.g. opp-hubspot-0001)")
    if args.ready_line:
        info = {"base_url": base_url, "accounts": accounts}
        print(READY_PREFIX + json.dumps(info))
    sys.stdout.flush()
    uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])
    return 0
