"""The ``nsf`` command: run one chapter, or build the whole book.

nsf run 03 --profile ci -p dt 0.002 -p keys "[1, 2, 4]" --output my_run.ipynb
nsf book --profile default
"""

from __future__ import annotations

import argparse
import sys

from nsf.profiles import PROFILES


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from papermill.exceptions import PapermillExecutionError

    from nsf import book

    try:
        if args.command == "run":
            overrides = {name: book.parse_value(value) for name, value in args.parameter}
            path = book.execute_chapter(
                args.chapter, args.profile, overrides, args.output, progress=not args.no_progress
            )
            print(f"executed notebook: {path}")
        else:
            book.build_book(args.profile, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, PapermillExecutionError) as error:
        print(f"nsf: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
