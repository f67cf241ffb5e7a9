"""Build the students' copies of the lessons: solutions replaced by their stubs, as notebooks without outputs.

A lesson (a jupytext ``py:percent`` file in ``course/``) marks each solution in a code cell like this::

    # BEGIN SOLUTION
    values = rewards + gamma * transitions @ values
    # STUB
    # values = None  # your code: one Bellman backup
    # END SOLUTION

The teacher's file runs the solution; the student's copy keeps only the stub, with the ``# `` of each of its
lines removed. In a markdown cell the solution is replaced by ``*Your answer here.*`` (no stub needed). Run::

    python -m palaestra.course build [--out build/course] [--format ipynb|py]

Notebooks are written with jupytext (cells without outputs) into a temporary folder that replaces ``--out``
only once every lesson is built, so a failed build leaves no half-built folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BEGIN", "END", "STUB", "BuildError", "build", "lessons", "student_source"]

BEGIN, STUB, END = "# BEGIN SOLUTION", "# STUB", "# END SOLUTION"
MARKDOWN_STUB = "# *Your answer here.*"
_CELL = re.compile(r"^# %%(?P<rest>.*)$")
#: The course folder of a source checkout (``course/`` beside the package).
COURSE_DIR = Path(__file__).resolve().parents[2] / "course"


class BuildError(ValueError):
    """A lesson whose solution markers do not pair up; the message names the file and line."""


def lessons(course_dir: Path = COURSE_DIR) -> list[Path]:
    """The lesson sources, ``NN_name.py``, in order."""
    return sorted(path for path in course_dir.glob("[0-9][0-9]_*.py"))


def student_source(text: str, name: str = "<lesson>") -> str:
    """``text`` (a py:percent lesson) with every solution block replaced by its stub."""
    out: list[str] = []
    markdown = False
    block: str | None = None  # None outside a block, "solution" or "stub" inside
    opened_at = 0
    for number, line in enumerate(text.splitlines(), start=1):
        marker = line.strip()
        header = _CELL.match(line)
        if header is not None:
            if block is not None:
                raise BuildError(f"{name}:{opened_at}: {BEGIN} is not closed before the next cell")
            markdown = "[markdown]" in header["rest"]
        if marker == BEGIN:
            if block is not None:
                raise BuildError(f"{name}:{number}: {BEGIN} inside another solution (opened on line {opened_at})")
            block, opened_at, has_stub = "solution", number, False
            indent = line[: len(line) - len(line.lstrip())]
            if markdown:
                out.append(indent + MARKDOWN_STUB)
        elif marker == STUB:
            if block != "solution" or markdown:
                raise BuildError(f"{name}:{number}: {STUB} outside a code cell's solution block")
            block, has_stub = "stub", True
        elif marker == END:
            if block is None:
                raise BuildError(f"{name}:{number}: {END} without {BEGIN}")
            if not markdown and not has_stub:
                raise BuildError(f"{name}:{opened_at}: the solution has no {STUB} part for the students' copy")
            block = None
        elif block == "stub":
            stripped = line.lstrip()
            if stripped and not stripped.startswith("#"):
                raise BuildError(f"{name}:{number}: a stub line must be commented out in the teacher's file")
            body = stripped[2:] if stripped.startswith("# ") else stripped[1:]
            out.append(line[: len(line) - len(stripped)] + body)
        elif block is None:
            out.append(line)
    if block is not None:
        raise BuildError(f"{name}:{opened_at}: {BEGIN} is never closed")
    return "\n".join(out) + "\n"


def build(out: Path, fmt: str = "ipynb", sources: Iterable[Path] | None = None) -> list[Path]:
    """Write the students' copy of every lesson into ``out`` (replaced as a whole); returns the files written."""
    if fmt not in ("ipynb", "py"):
        raise ValueError(f"format must be 'ipynb' or 'py', got {fmt!r}")
    paths = list(lessons() if sources is None else sources)
    if not paths:
        raise BuildError(f"no lessons (NN_name.py) found in {COURSE_DIR}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for path in paths:
            student = student_source(path.read_text(), str(path))
            target = staging / f"{path.stem}.{fmt}"
            if fmt == "py":
                target.write_text(student)
            else:
                import jupytext

                notebook = jupytext.reads(student, fmt="py:percent")
                jupytext.write(notebook, target, fmt="ipynb")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out.glob(f"*.{fmt}"))


def main(argv: list[str] | None = None) -> int:
    """``python -m palaestra.course build``: the students' notebooks (exit 2 with one line on a bad lesson)."""
    parser = argparse.ArgumentParser(prog="python -m palaestra.course", description="Build the course's student copies.")
    commands = parser.add_subparsers(dest="command", required=True)
    building = commands.add_parser("build", help="write the lessons with solutions stripped")
    building.add_argument("--out", default="build/course", help="output folder, replaced as a whole (default build/course)")
    building.add_argument("--format", choices=("ipynb", "py"), default="ipynb", help="notebooks (default) or py:percent")
    args = parser.parse_args(argv)
    try:
        written = build(Path(args.out), args.format)
    except ModuleNotFoundError as error:
        print(f"palaestra course: error: {error.name} is missing: pip install 'palaestra[course]'", file=sys.stderr)
        return 2
    except BuildError as error:
        print(f"palaestra course: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student {'notebooks' if args.format == 'ipynb' else 'lessons'} to {args.out}")
    return 0
