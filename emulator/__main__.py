"""``python -m emulator``: serve the local Microsoft cloud emulator in the foreground.

Prints the client environment (and writes it with ``--env-file``) once it accepts connections;
stops cleanly on Ctrl+C / SIGTERM, saving the tenant when ``--state-dir`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from emulator.runner import load_faults_file, load_settings_file, start_server, stop_server
from emulator.state import Options


def parse_args(argv: list[str] | None = None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; keep it loopback)")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port; 0 picks a free one (default 8443)")
    parser.add_argument("--state-dir", type=Path, help="persist the tenant (and keep certificates) in this folder")
    parser.add_argument("--cert-dir", type=Path, help="certificate folder (default: the state folder, else .emulator/)")
    parser.add_argument("--env-file", type=Path, help="write the client environment to this dotenv file once serving")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, secrets and random faults (default 0)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--faults", type=Path, help="JSON file of fault settings (see README 'Faults')")
    parser.add_argument("--secrets-file", type=Path, help="JSON file seeding Key Vault (default emulator/data/secrets.json)")
    parser.add_argument("--settings", type=Path,
                        help='JSON file {"directory": {...}, "provisioning": {...}} of start settings (see README "Settings")')
    parser.add_argument("--quiet", action="store_true", help="print only the environment")
    args = parser.parse_args(argv)
    if args.time_scale <= 0:
        parser.error("--time-scale must be > 0")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    try:
        faults = load_faults_file(args.faults) if args.faults else None
    except (OSError, ValueError) as error:
        parser.error(f"--faults: {error}")
    try:
        directory_settings, provisioning_settings = load_settings_file(args.settings) if args.settings else ({}, {})
    except (OSError, ValueError) as error:
        parser.error(f"--settings: {error}")
    return Options(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        cert_dir=args.cert_dir,
        env_file=args.env_file,
        seed=args.seed,
        time_scale=args.time_scale,
        faults=faults,
        secrets_file=args.secrets_file,
        directory_settings=directory_settings,
        provisioning_settings=provisioning_settings,
    ), args.quiet


async def _serve(options: Options, quiet: bool) -> None:
    started = await start_server(options)
    if not quiet:
        print(f"# Entra/Graph/Key Vault emulator serving {started.origin} (tenant {started.state.directory.tenant_id})")
    for key, value in started.env.items():
        print(f"{key}={value}")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_server(started)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options, quiet = parse_args(argv)
    try:
        asyncio.run(_serve(options, quiet))
    except OSError as error:
        print(f"emulator: cannot start: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"emulator: bad configuration: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
