"""``python -m devhost start|status``: the command line (see devhost/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from devhost.errors import DevhostError


def _start_parser(sub) -> None:
    p = sub.add_parser("start", help="serve a function app like 'func start'")
    p.add_argument("--app", default="function_app.py",
                   help="path to the app's function_app.py (or its folder); default ./function_app.py")
    p.add_argument("--port", type=int, default=None,
                   help="HTTP port (default: local.settings.json Host.LocalHttpPort, else 7071; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--state-dir", default=None, help="state folder (SQLite, keys, timers, Azurite data); default <app folder>/.devhost")
    p.add_argument("--function-key", default=None, help="use this function key instead of the generated one")
    p.add_argument("--virtual-clock", action="store_true",
                   help="durable timers fire as soon as the host is otherwise idle (tests)")


def start(args: argparse.Namespace) -> int:
    from devhost.app_loader import LoadedApp
    from devhost.config import apply_local_settings, load_host_json
    from devhost.server import StartOptions, serve, setup_logging

    app_path = os.path.abspath(args.app)
    if os.path.isdir(app_path):
        app_path = os.path.join(app_path, "function_app.py")
    script_root = os.path.dirname(app_path)
    state_dir = os.path.abspath(args.state_dir) if args.state_dir else os.path.join(script_root, ".devhost")
    if not os.path.isfile(app_path):
        print(f"devhost: no function app at {app_path} (use --app PATH/function_app.py)", file=sys.stderr)
        return 2
    os.chdir(script_root)  # the worker's working directory is the script root
    os.environ.setdefault("AzureWebJobsScriptRoot", script_root)  # set by the host for the worker, too
    try:
        settings = apply_local_settings(script_root)
        config = load_host_json(script_root)
        setup_logging(config)
        import logging

        log = logging.getLogger("devhost")
        for name in settings.skipped:
            log.info("Skipping '%s' from local settings as it's already defined in current environment variables.", name)
        app = LoadedApp.load(app_path)
    except DevhostError as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        return 2
    port = args.port if args.port is not None else (settings.local_http_port or 7071)
    options = StartOptions(app_path=app_path, state_dir=state_dir, port=port, host=args.host,
                           function_key=args.function_key, virtual_clock=args.virtual_clock)
    try:
        return asyncio.run(serve(options, app, config))
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "status":
        from devhost.status import main as status_main  # the operator view (python -m devhost status)

        return status_main(argv[1:]) or 0
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Local Azure Functions + Durable Functions host")
    sub = parser.add_subparsers(dest="command", required=True)
    _start_parser(sub)
    sub.add_parser("status", help="show orchestration instances (python -m devhost status --help)")
    args = parser.parse_args(argv)
    return start(args)


if __name__ == "__main__":
    sys.exit(main())
