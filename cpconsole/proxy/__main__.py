"""`python -m cpconsole.proxy --host H --port P --prefiller-hosts … --prefiller-ports … --decoder-hosts …
--decoder-ports …`: the PD proxy, with load_balance_proxy_server_example.py's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .app import MAX_BODY_BYTES, PdProxy, ProxySettings
from .server import KEEP_ALIVE_S, serve

CONTROL_HEADROOM = 64  # connections for /healthcheck, /metrics and the instance API past --limit-concurrency


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cpconsole.proxy", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--prefiller-hosts", nargs="+", default=["localhost"])
    parser.add_argument("--prefiller-ports", type=int, nargs="+", default=[8001])
    parser.add_argument("--decoder-hosts", nargs="+", default=["localhost"])
    parser.add_argument("--decoder-ports", type=int, nargs="+", default=[8002])
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--retry-delay", type=float, default=0.001)
    parser.add_argument("--max-waiting-retries", type=int, default=3)  # accepted for compatibility
    parser.add_argument("--waiting-retry-interval", type=float, default=10)  # accepted for compatibility
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    # cpconsole's own: what clients may do
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger bodies get 413")
    parser.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds from a request's first byte to its whole head"
    )
    parser.add_argument(
        "--keep-alive-timeout", type=int, default=KEEP_ALIVE_S, help="seconds an idle connection is kept open"
    )
    parser.add_argument(
        "--limit-concurrency",
        type=int,
        default=1024,
        help="past this many completions in flight: 503 (/healthcheck and /metrics are still served)",
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to connect to a backend")
    parser.add_argument(
        "--prefill-timeout", type=float, default=900.0, help="seconds to wait for a prefill's answer (a 128k prompt)"
    )
    parser.add_argument(
        "--decode-timeout", type=float, default=900.0, help="seconds to wait for the decode's next bytes"
    )
    parser.add_argument(
        "--retry-budget",
        type=float,
        default=60.0,
        help="seconds after a request arrived within which a failed attempt is tried on another instance",
    )
    parser.add_argument(
        "--kv-params",
        choices=["required", "optional"],
        default="required",
        help="a prefill answer without kv_transfer_params: 502 (required), or sent on to the decode (optional: "
        "for connectors that hand the KV over without them, like ExampleConnector)",
    )
    parser.add_argument(
        "--require-api-key",
        action="store_true",
        help="clients must send Authorization: Bearer $OPENAI_API_KEY, the key the servers are sent (401 otherwise)",
    )
    parser.add_argument(
        "--enable-instance-api", action="store_true", help="/instances/add|remove (off: 403); loopback or admin token"
    )
    parser.add_argument(
        "--admin-token-env",
        default="CPCONSOLE_PROXY_ADMIN_TOKEN",
        help="environment variable holding the admin token the instance API asks of non-loopback clients",
    )
    args = parser.parse_args(argv)
    positive = ["max_body_bytes", "header_timeout", "keep_alive_timeout", "limit_concurrency", "connect_timeout"]
    positive += ["prefill_timeout", "decode_timeout"]
    if min(getattr(args, name) for name in positive) <= 0:
        parser.error(", ".join("--" + name.replace("_", "-") for name in positive) + " must be positive")
    if args.retry_budget < 0 or args.max_retries < 0:
        parser.error("--retry-budget and --max-retries must be 0 or more")
    if args.require_api_key and not os.environ.get("OPENAI_API_KEY"):
        parser.error("--require-api-key needs the key in $OPENAI_API_KEY")
    if len(args.prefiller_hosts) != len(args.prefiller_ports):
        parser.error("Number of prefiller hosts must match number of prefiller ports")
    if len(args.decoder_hosts) != len(args.decoder_ports):
        parser.error("Number of decoder hosts must match number of decoder ports")
    if args.workers != 1:
        parser.error("--workers > 1 is not supported by cpconsole.proxy; run one proxy per port")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(asctime)s %(message)s", datefmt="%m-%d %H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per backend call would drown the log
    proxy = PdProxy(
        list(zip(args.prefiller_hosts, args.prefiller_ports, strict=True)),
        list(zip(args.decoder_hosts, args.decoder_ports, strict=True)),
        ProxySettings(
            args.max_retries,
            args.retry_delay,
            max_body_bytes=args.max_body_bytes,
            instance_api=args.enable_instance_api,
            admin_token=os.environ.get(args.admin_token_env, ""),
            kv_params_required=args.kv_params == "required",
            client_key=os.environ.get("OPENAI_API_KEY", "") if args.require_api_key else "",
            connect_timeout=args.connect_timeout,
            prefill_timeout=args.prefill_timeout,
            decode_timeout=args.decode_timeout,
            retry_budget_s=args.retry_budget,
            limit_requests=args.limit_concurrency,
        ),
    )
    print(
        f"Initialized {len(args.prefiller_hosts)} prefill clients and {len(args.decoder_hosts)} decode clients.",
        flush=True,
    )
    serve(
        proxy.app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        head_timeout=args.header_timeout,
        keep_alive=args.keep_alive_timeout,
        # room above the completions' own limit: health and metrics are answered at that limit too
        limit_concurrency=args.limit_concurrency + CONTROL_HEADROOM,
    )
    return 0


def run() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
