"""The ``nsf`` command: run one chapter, build the book, or train one configuration.

nsf run 03 --profile ci -p dt 0.002 -p keys "[1, 2, 4]" --output my_run.ipynb
nsf book --profile default
nsf figures                                                # the figure index of the built book
nsf ledger                                                 # the claims ledger's verdicts
nsf sweep plan|run|status|collect sweep.toml --store runs   # a grid of trainings
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
from collections import Counter

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

    commands.add_parser("figures", help="list the built book's figures: PDF, commit, command")
    commands.add_parser("ledger", help="list the built book's claims and their verdicts")

    train = commands.add_parser(
        "train", help="train one TrainConfig in a run store (also under torchrun)"
    )
    train.add_argument("--config", required=True, help="a TOML or JSON file of TrainConfig fields")
    train.add_argument("--store", required=True, help="the run store's root directory")
    train.add_argument("--data-root", help="where the datasets are (else $NSF_DATA_ROOT)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    sweep = commands.add_parser("sweep", help="plan, run, watch and collect a grid of trainings")
    actions = sweep.add_subparsers(dest="action", required=True)
    for name, text in [
        ("plan", "one line per run: index, run directory, status, what the grid sets"),
        ("run", "run the unfinished points (local workers, one --index, or a SLURM array)"),
        ("status", "how many runs are done, running, pending, failed"),
        ("collect", "one tidy CSV of the finished runs' metrics (a row per run and epoch)"),
    ]:
        action = actions.add_parser(name, help=text)
        action.add_argument("spec", help="the sweep's TOML file ([base], [grid], seeds)")
        action.add_argument("--store", required=True, help="the run store's root directory")
    run_sweep = actions.choices["run"]
    where = run_sweep.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, help="local worker processes")
    where.add_argument(
        "--index", type=int, help="run one point (e.g. $SLURM_ARRAY_TASK_ID of an array job)"
    )
    where.add_argument(
        "--executor", choices=["slurm", "local"], help="submit a job array through submitit"
    )
    run_sweep.add_argument("--gpus-per-job", type=int, default=1, help="DDP ranks per job")
    run_sweep.add_argument("--timeout-min", type=int, default=24 * 60, help="per job")
    run_sweep.add_argument("--partition", help="SLURM partition")
    run_sweep.add_argument("--account", help="SLURM account")
    run_sweep.add_argument("--retry-failed", action="store_true", help="run failed points again")
    run_sweep.add_argument("--data-root", help="where the datasets are (else $NSF_DATA_ROOT)")
    run_sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    actions.choices["collect"].add_argument("--output", required=True, help="the CSV to write")
    return parser


def _counts(statuses: dict[int, str], names: tuple[str, ...]) -> str:
    """``"3 done, 0 running, 1 pending, 0 failed of 4"``."""
    counts = Counter(statuses.values())
    return ", ".join(f"{counts[s]} {s}" for s in names) + f" of {len(statuses)}"


def _sweep(args: argparse.Namespace) -> None:
    from nsf.train import sweep

    plan = sweep.Sweep.from_file(args.spec)
    if args.action == "plan":
        print("\n".join(sweep.plan_lines(plan, args.store)))
    elif args.action == "status":
        print(_counts(sweep.status(plan, args.store), sweep.STATUSES))
    elif args.action == "collect":
        path = sweep.collect(plan, args.store, args.output)
        print(f"wrote {path}")
    elif args.executor:
        options = {
            k: v for k, v in {"partition": args.partition, "account": args.account}.items() if v
        }
        jobs = sweep.submit(
            plan, args.store, cluster=args.executor, data_root=args.data_root,
            gpus_per_job=args.gpus_per_job, timeout_min=args.timeout_min, slurm_options=options,
        )  # fmt: skip
        print(f"submitted {len(jobs)} jobs" + (f": {jobs[0].job_id.split('_')[0]}" if jobs else ""))
    elif args.index is not None:
        state = sweep.run_point(
            plan, args.store, args.index, data_root=args.data_root,
            retry_failed=args.retry_failed, progress=not args.no_progress,
        )  # fmt: skip
        print(f"point {args.index}: {state}")
    else:
        after = sweep.run_local(
            plan, args.store, workers=args.workers, data_root=args.data_root,
            retry_failed=args.retry_failed, progress=not args.no_progress,
        )  # fmt: skip
        print(_counts(after, sweep.STATUSES))
        failed = sum(state == "failed" for state in after.values())
        if failed:
            raise SystemExit(f"nsf: error: {failed} runs failed; see failed.json in them")


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


def _published() -> dict:
    """The records of the chapters the last ``nsf book`` published (``book/chapters``)."""
    from nsf.book.build import published_records

    found = published_records()
    if not found:
        raise FileNotFoundError("no executed chapter in book/chapters: build the book (make book)")
    return found


def _figures(args: argparse.Namespace) -> None:
    from nsf.book.figure_index import figure_rows

    for row in figure_rows(_published()):
        print(f"{row['chapter']}  {row['label']}\n  {row['pdf'].lstrip('/')}  (commit "
              f"{row['commit']}, params {row['params']})\n  {row['command']}")  # fmt: skip


def _ledger(args: argparse.Namespace) -> None:
    from nsf import ledger

    rows = ledger.ledger_rows(_published())
    for row in rows:
        strength = f" [{row.strength}]" if row.strength else ""
        print(f"{row.claim.id:>4}  {row.verdict}{strength}: {row.ours}")
    print(", ".join(f"{n} {v}" for v, n in ledger.verdict_counts(rows).items() if n))


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


def _message(error: Exception) -> str:
    """pydantic's errors as one line per problem; any other error as it says itself."""
    if type(error).__module__.startswith("pydantic"):
        from nsf.validation import describe

        return describe(error)  # type: ignore[arg-type]
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "book": _book, "figures": _figures, "ledger": _ledger,
               "train": _train, "sweep": _sweep}[args.command]  # fmt: skip
    try:
        command(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"nsf: error: {_message(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
