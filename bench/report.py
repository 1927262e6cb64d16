"""BENCHMARKS.md: each benchmark replaces its own section and names the command that made it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

from marketdata.settings import Settings

FILE_HEADER: Final = """# Benchmarks

Each section below is produced by a script in `bench/`, which writes (or replaces) its own section
and records the exact command line, the date and the machine. Every figure is compared against a
baseline measured in the same run on the same machine, because absolute rates on a small shared
machine move from one run to the next: compare ratios across runs, not raw rates.
"""


def section_into(document: str, title: str, section: str) -> str:
    """Replace the section headed ``title`` in ``document``, or append it; keep the others."""
    if not document.strip():
        return f"{FILE_HEADER}\n{section}"
    start = document.find(title)
    if start < 0:
        return f"{document.rstrip()}\n\n{section}"
    following = document.find("\n## ", start + len(title))
    after = "" if following < 0 else "\n" + document[following + 1 :].rstrip() + "\n"
    return f"{document[:start]}{section.rstrip()}\n{after}"


def write_section(path: Path, title: str, section: str) -> None:
    path.write_text(section_into(path.read_text() if path.exists() else "", title, section))


def command_line(module: str) -> str:
    """How this benchmark was run, with the interpreter relative to the project when it can be."""
    python = sys.executable
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(python)
        python = python if relative.startswith("..") else relative
    return shlex.join([python, "-m", module, *sys.argv[1:]])


def benchmark_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments every benchmark takes; each adds its own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"),
                        help="the report whose section this benchmark replaces")  # fmt: skip
    return parser


def run_benchmark(
    parser: argparse.ArgumentParser,
    measure: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, str]],
    title: str,
    argv: Sequence[str] | None,
) -> None:
    """Parse the arguments, measure against the configured services, print and record."""
    args = parser.parse_args(argv)
    section = asyncio.run(measure(args, Settings.from_env()))
    print(section)
    write_section(args.output, title, section)
