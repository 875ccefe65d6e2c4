"""``hf-genrec serve``: serve a saved recommender over HTTP (FastAPI + uvicorn; the ``serve`` extra)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..serving.recommender import GenerativeRecommender

EPILOG = """\
endpoints:
  POST /recommend       {"history": ["50", "181"], "k": 10} or {"histories": [[...], ...], "k": 10}, optional
                        "exclude": true|false; answers {"items": [{"item_id", "score"}, ...]} or {"results": [...]}
  GET  /health          {"status": "ok"}
  GET  /info            the bundle, its catalogue and the search settings
  POST /catalog/add     {"items": [{"item_id": ..., "codes": [...]}]}, with Authorization: Bearer <token>
  POST /catalog/remove  {"item_ids": [...]}, with Authorization: Bearer <token>
  GET  /docs            the API, interactive (OpenAPI)

Catalogue changes are off unless --admin-token-env names an environment variable holding a token (never pass the
token itself on the command line: other users see it in the process list). They live in memory until the server
stops; `hf-genrec catalog` changes a saved bundle."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-genrec serve",
        description="Serve a saved recommender over HTTP: concurrent requests are gathered into one beam search.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", help="A folder written by `hf-genrec train` or `save_pretrained`, or a Hub repo id.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: loopback only).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--max-batch", type=int, default=64, help="The most histories gathered into one beam search (1: one each)."
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="How long the first waiting request waits for others to share its search (milliseconds).",
    )
    parser.add_argument(
        "--max-request-histories", type=int, default=256, help="The most histories one request may send (HTTP 413)."
    )
    parser.add_argument(
        "--admin-token-env",
        default=None,
        metavar="VAR",
        help="Turn the catalogue endpoints on, with the token held by the environment variable VAR.",
    )
    parser.add_argument("--device", default=None, help="Where to put the model (default: CPU), e.g. cuda.")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec serve`` on ``argv``; returns the exit status (after the server stops)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_batch < 1:
        parser.error(f"--max-batch must be >= 1, got {args.max_batch}.")
    if args.max_wait_ms < 0:
        parser.error(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}.")
    if args.max_request_histories < 1:
        parser.error(f"--max-request-histories must be >= 1, got {args.max_request_histories}.")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}.")
    token = None
    if args.admin_token_env is not None:
        token = os.environ.get(args.admin_token_env, "")
        if not token.strip():
            raise ValueError(
                f"--admin-token-env {args.admin_token_env}: that environment variable is unset or empty. Export a "
                f"secret token in it (e.g. `export {args.admin_token_env}=$(openssl rand -hex 32)`), or leave the "
                "option out to keep the catalogue endpoints off."
            )
    try:
        import uvicorn

        from ..serving.http import create_app
    except ImportError as err:
        print(f"hf-genrec serve: error: {err}", file=sys.stderr)
        if 'hf_genrec[serve]"' not in str(err):
            print('hf-genrec serve needs FastAPI and uvicorn: pip install "hf_genrec[serve]"', file=sys.stderr)
        return 1
    recommender = GenerativeRecommender.from_pretrained(args.bundle, device=args.device)
    app = create_app(
        recommender,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_request_histories=args.max_request_histories,
        admin_token=token,
        bundle_name=str(args.bundle),
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
