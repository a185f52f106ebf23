"""The ``nsf`` command: run one chapter, build the book, or train one configuration.

nsf run 03 --profile ci -p dt 0.002 -p keys "[1, 2, 4]" --output my_run.ipynb
nsf book --profile default
nsf train --config cfg.toml --store runs                   # one process
torchrun --nproc_per_node=8 -m nsf train --config cfg.toml --store runs

A bad parameter or config is refused before any work starts, with exit status 2 and a one-line
message (no traceback) that names the value and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from nsf.book.profiles import PROFILES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nsf", description="Natural Spectral Fusion companion")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute one chapter with papermill")
    run.add_argument("chapter", help="chapter number or name, e.g. 01 or 01_unified_rule")
    run.add_argument("--profile", choices=PROFILES, default="default")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="override a parameter; VALUE is read as a Python literal where it is one",
    )  # fmt: skip
    run.add_argument("--output", help="where to write the executed notebook")
    run.add_argument("--no-progress", action="store_true", help="hide the cell progress bar")

    book = commands.add_parser("book", help="execute every chapter (cached) and build the book")
    book.add_argument("--profile", choices=PROFILES, default="default")
    book.add_argument("--no-progress", action="store_true", help="hide the cell progress bars")

    train = commands.add_parser(
        "train", help="train one TrainConfig in a run store (also under torchrun)"
    )
    train.add_argument("--config", required=True, help="a TOML or JSON file of TrainConfig fields")
    train.add_argument("--store", required=True, help="the run store's root directory")
    train.add_argument("--data-root", help="where the datasets are (else $NSF_DATA_ROOT)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def _run(args: argparse.Namespace) -> None:
    from nsf import book

    overrides = {name: book.parse_value(value) for name, value in args.parameter}
    try:
        path = book.execute_chapter(
            args.chapter, args.profile, overrides, args.output, progress=not args.no_progress
        )
    except book.ChapterExecutionError as error:
        raise SystemExit(f"nsf: error: {error}") from None
    print(f"executed notebook: {path}")


def _book(args: argparse.Namespace) -> None:
    from nsf import book

    try:
        book.build_book(args.profile, progress=not args.no_progress)
    except book.ChapterExecutionError as error:
        raise SystemExit(f"nsf: error: {error}") from None


def _train(args: argparse.Namespace) -> None:
    from nsf.train import TrainConfig, train
    from nsf.train.errors import DatasetCorruptError

    config = TrainConfig.from_file(args.config)
    progress = False if args.no_progress else None
    try:
        result = train(config, args.store, data_root=args.data_root, progress=progress)
    except DatasetCorruptError as error:
        raise SystemExit(f"nsf: error: {error}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {"run_dir": str(result.run_dir), "from_cache": result.from_cache}
        print(json.dumps({**summary, "final": result.metrics[-1]}))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "book": _book, "train": _train}[args.command]
    try:
        command(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"nsf: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
