"""The course runs: every lesson top to bottom in the fast setting, its checks passing on the solutions; the
students' copy (solutions stripped) runs too, and every exercise's check reports "not yet" instead of crashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from palaestra.course import FAST_ENV_VAR
from palaestra.course.build import BEGIN, END, build, lessons, student_source
from palaestra.course.checks import FAIL, PASS

LESSONS = lessons()


def run_lesson(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, FAST_ENV_VAR: "1", "MPLBACKEND": "Agg", "MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    env.setdefault("PALAESTRA_CACHE", str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def check_lines(output: str) -> tuple[list[str], list[str]]:
    lines = output.splitlines()
    return [line for line in lines if line.startswith(PASS)], [line for line in lines if line.startswith(FAIL)]


def test_the_course_has_its_eight_lessons() -> None:
    assert [path.name[:2] for path in LESSONS] == [f"{n:02d}" for n in range(1, 9)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_every_exercise_has_a_solution_and_a_stub(lesson: Path) -> None:
    text = lesson.read_text()
    assert text.count(BEGIN) >= 1, f"{lesson.name} has no exercise"
    assert text.count(BEGIN) == text.count(END)
    student = student_source(text, lesson.name)
    assert BEGIN not in student and END not in student


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_runs_in_the_fast_setting_and_its_solutions_pass(lesson: Path, tmp_path: Path) -> None:
    result = run_lesson(lesson, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    passed, failed = check_lines(result.stdout)
    assert passed and not failed, result.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_students_copy_runs_and_its_checks_say_not_yet(lesson: Path, tmp_path: Path) -> None:
    (student,) = build(tmp_path / "student", fmt="py", sources=[lesson])
    result = run_lesson(student, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    passed, failed = check_lines(result.stdout)
    assert failed and not passed, result.stdout[-3000:]


def test_student_notebooks_hold_no_solution_and_no_outputs(tmp_path: Path) -> None:
    pytest.importorskip("jupytext")
    notebooks = build(tmp_path / "notebooks")
    assert [path.stem for path in notebooks] == [path.stem for path in LESSONS]
    for notebook, lesson in zip(notebooks, LESSONS, strict=True):
        cells = json.loads(notebook.read_text())["cells"]
        sources = "\n".join("".join(cell["source"]) for cell in cells)
        assert BEGIN not in sources and "# STUB" not in sources
        assert all(not cell.get("outputs") for cell in cells if cell["cell_type"] == "code")
        for solution_line in solution_lines(lesson.read_text()):
            assert solution_line not in sources, f"{notebook.name} shows a solution line: {solution_line!r}"


def solution_lines(text: str) -> list[str]:
    """The distinctive lines of every solution (not the stub), stripped of indentation."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            inside = True
        elif marker in ("# STUB", END):
            inside = False
        elif inside and len(marker) > 12 and not marker.startswith("#"):
            lines.append(marker)
    return lines
