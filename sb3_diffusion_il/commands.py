"""What the command-line entry points share: argument types, the progress-bar flag, a standalone ``main``.

Each command module (`experts`, `compare`, `report`, and `cli`'s own) defines
``add_arguments(parser)`` and ``run(args, parser)``; ``run`` reports a bad
argument with ``parser.error`` (usage, one error line, exit status 2) and finds
the command as typed in ``args.command_line``. The same two functions serve
``python -m MODULE`` (through `run_standalone`) and a subcommand of
``sb3-diffusion-il``.
"""

import argparse
import shlex
import sys
from typing import Callable, Optional, Sequence, TypeVar

Number = TypeVar("Number", int, float)
AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace, argparse.ArgumentParser], None]


def _number(text: str, kind: Callable[[str], Number], noun: str, valid: Callable[[Number], bool], what: str) -> Number:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"{value} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``8_000`` is read as 8000)."""
    return _number(text, int, "an integer", lambda value: value >= 1, "positive")


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    return _number(text, float, "a number", lambda value: value > 0, "positive")


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _number(text, int, "an integer", lambda value: value >= 0, "zero or more")


def add_progress_bar_argument(parser: argparse.ArgumentParser) -> None:
    """``--progress-bar/--no-progress-bar``; bars show by default only on a terminal, not in log files."""
    parser.add_argument(
        "--progress-bar",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="show progress bars (default: when stderr is a terminal)",
    )


def run_standalone(
    prog: str, description: str, add_arguments: AddArguments, run: Run, argv: Optional[Sequence[str]],
) -> None:
    """Parses ``argv`` (``sys.argv[1:]`` when None) with one command's arguments and runs it.

    :param prog: the command as a user types it, e.g. ``python -m sb3_diffusion_il.benchmark.experts``
    :param description: the ``--help`` text, usually the module's docstring
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog=prog, description=help_text(description), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = command_line(prog, argv)
    run(args, parser)


def help_text(docstring: str) -> str:
    """A module's docstring as ``--help`` shows it: its RST literals (double backticks) in single ones."""
    return docstring.replace("``", "`")


def command_line(prog: str, argv: Sequence[str]) -> str:
    """The command as typed, for records of how a result was made (``args.command_line``)."""
    return shlex.join([*prog.split(), *argv])
