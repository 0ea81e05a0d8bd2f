"""``videobot``: the one command for every entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from videobot import __version__
from videobot.presets import TINY_DEFAULT_FAMILY, TINY_FAMILIES
from videobot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("videobot")

HELP = """\
videobot: a self-hosted Discord bot that turns /video prompts into videos on your GPU.

commands:
  run                 apply migrations, then run the bot and a supervised local worker (the main job)
  bot                 run only the Discord bot
  worker              run only a GPU worker (run several, on several machines, with PostgreSQL)
  db upgrade          apply database migrations (done by `run` automatically)
  db current          show the database's migration revision
  check [--assume-gpu-gb N] [--run]
                     what this machine will run (model, memory, attention, cache, licence) and whether it works
  generate PROMPT     make a video (or --variations N, or --hd) locally, no Discord and no database (check your GPU and model)
  make-tiny-model DIR [--family F]
                     build a tiny random test model (wan, wan22, ltx, ltx2, cogvideox) into DIR (offline)

Settings come from the environment and .env; see .env.example and the README.
"""


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"videobot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup(settings: Settings, process: str) -> None:
    from videobot.logs import setup_logging

    secrets = [settings.discord_token.get_secret_value()] if settings.discord_token else []
    setup_logging(settings.log_level, secrets=secrets, process=process, log_format=settings.log_format)


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup(settings, "db")
    from videobot import migrate
    from videobot.runner import PreflightError, check_data_dir, check_database

    try:
        check_data_dir(settings)
        check_database(settings, need_schema=False)
    except PreflightError as exc:
        print(f"videobot: {exc}", file=sys.stderr)
        return 2
    if args.db_command == "upgrade":
        migrate.upgrade(settings.db_url)
        print(f"database is at revision {migrate.head_revision()}")
    else:
        print(asyncio.run(migrate.current_revision(settings.db_url)) or "(empty database)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup(settings, "run")
    from videobot.runner import run_all

    return run_all(settings)


def _preflight(settings: Settings, *, token: bool) -> None:
    from videobot.runner import PreflightError, check_data_dir, check_database, check_token

    try:
        check_data_dir(settings)
        if token:
            check_token(settings)
        check_database(settings)
    except PreflightError as exc:
        print(f"videobot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_bot(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup(settings, "bot")
    _preflight(settings, token=True)
    from bot.app import main as bot_main

    return bot_main(settings)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.gpus is not None:
        settings = settings.model_copy(update={"gpus": args.gpus})
    _setup(settings, "worker")
    _preflight(settings, token=False)
    if settings.gpus > 1:
        from generator.parallel import main as parallel_main

        return parallel_main(settings)
    from generator.worker import main as worker_main

    return worker_main(settings)


def _gpus(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--gpus takes a whole number from 1 to 64, not {text!r}")
    return n


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `generate` has its own parser (generator.generate_cli) so its --help is complete.
    if argv and argv[0] == "generate":
        from generator.generate_cli import main as generate_main

        return generate_main(argv[1:])
    if argv and argv[0] == "check":
        from generator.check import main as check_main

        settings = _settings()
        _setup(settings, "check")
        return check_main(argv[1:], settings)
    if argv and argv[0] == "make-tiny-model":
        parser = argparse.ArgumentParser(
            prog="videobot make-tiny-model", description="Build the tiny random test model (offline)."
        )
        parser.add_argument("dir", help="folder to write the diffusers model into")
        parser.add_argument(
            "--family",
            choices=TINY_FAMILIES,
            default=TINY_DEFAULT_FAMILY,
            help=f"which model family's classes to use (default: {TINY_DEFAULT_FAMILY}, the one `tiny` uses); "
            "VIDEOBOT_MODEL=tiny-FAMILY runs it",
        )
        ns = parser.parse_args(argv[1:])
        from pathlib import Path

        from generator.tiny import build_tiny_model

        print(build_tiny_model(Path(ns.dir), ns.family))
        return 0

    parser = argparse.ArgumentParser(
        prog="videobot", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"videobot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="apply migrations, then run the bot and a supervised worker").set_defaults(
        func=cmd_run
    )
    sub.add_parser("bot", help="run only the Discord bot").set_defaults(func=cmd_bot)
    worker = sub.add_parser("worker", help="run only a GPU worker")
    worker.add_argument(
        "--gpus",
        type=_gpus,
        metavar="N",
        help="split each video across N GPUs of this machine (context parallelism; Wan 2.1 / 2.2 models); "
        "overrides VIDEOBOT_GPUS",
    )
    worker.set_defaults(func=cmd_worker)
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", metavar="upgrade|current", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to the newest")
    db_sub.add_parser("current", help="show the current revision")
    db.set_defaults(func=cmd_db)
    sub.add_parser(
        "check", help="what this machine will run and whether it works (see `videobot check --help`)"
    )
    sub.add_parser("generate", help="make a video (or N variations) locally (see `videobot generate --help`)")
    sub.add_parser("make-tiny-model", help="build the tiny random test model into DIR")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
