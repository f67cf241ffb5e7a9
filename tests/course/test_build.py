import subprocess
import sys

import pytest

from palaestra.course import MissingExtra, budget, is_fast, require
from palaestra.course.build import BuildError, build, student_source
from palaestra.course.checks import check_array, check_number

LESSON = """# %% [markdown]
# Why does value iteration converge?
# BEGIN SOLUTION
# Because the Bellman operator is a contraction.
# END SOLUTION

# %%
def backup(v):
    # BEGIN SOLUTION
    return 0.9 * v + 1.0
    # STUB
    # return None  # your code
    # END SOLUTION
"""


def test_student_source_keeps_the_stub_and_drops_the_solution():
    student = student_source(LESSON)
    assert "contraction" not in student and "0.9 * v" not in student
    assert "# *Your answer here.*" in student
    assert "    return None  # your code\n" in student
    namespace: dict = {}
    exec(student, namespace)
    assert namespace["backup"](1.0) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# %%\n# BEGIN SOLUTION\nx = 1\n", "is never closed"),
        ("# %%\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "has no # STUB part"),
        ("# %%\n# END SOLUTION\n", "without # BEGIN SOLUTION"),
        ("# %%\n# BEGIN SOLUTION\nx = 1\n# STUB\nx = None\n# END SOLUTION\n", "must be commented out"),
        ("# %%\n# BEGIN SOLUTION\nx = 1\n# %%\n", "is not closed before the next cell"),
    ],
)
def test_unpaired_markers_name_the_line(text, message):
    with pytest.raises(BuildError, match=message):
        student_source(text, "lesson.py")


def test_build_replaces_the_output_folder_only_when_every_lesson_built(tmp_path):
    good, bad = tmp_path / "01_good.py", tmp_path / "02_bad.py"
    good.write_text(LESSON)
    bad.write_text("# %%\n# BEGIN SOLUTION\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.py").write_text("kept")
    with pytest.raises(BuildError):
        build(out, fmt="py", sources=[good, bad])
    assert [path.name for path in out.iterdir()] == ["old.py"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out-")]
    assert [path.name for path in build(out, fmt="py", sources=[good])] == ["01_good.py"]


def test_build_command_exits_2_with_one_line_on_a_bad_format(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "palaestra.course", "build", "--format", "pdf", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "invalid choice: 'pdf'" in result.stderr


def test_fast_setting(monkeypatch):
    monkeypatch.setenv("PALAESTRA_COURSE_FAST", "1")
    assert is_fast() and budget(100, 5) == 5
    monkeypatch.setenv("PALAESTRA_COURSE_FAST", "0")
    assert not is_fast() and budget(100, 5) == 100
    monkeypatch.setenv("PALAESTRA_COURSE_FAST", "yes")
    with pytest.raises(ValueError, match="PALAESTRA_COURSE_FAST must be 0 or 1, got 'yes'"):
        is_fast()


def test_require_names_the_pip_install():
    with pytest.raises(MissingExtra, match=r"this lesson needs no_such_module_x: pip install no_such_module_x"):
        require("no_such_module_x")
    require("numpy")


def test_checks_say_what_shape_they_expected(capsys):
    assert not check_array("q-values", [[1.0, 2.0]], [1.0, 2.0])
    assert "expected an array of shape (2,), got shape (1, 2)" in capsys.readouterr().out
    assert not check_array("q-values", None, [1.0, 2.0])
    assert "no answer yet" in capsys.readouterr().out
    assert check_array("q-values", [1.0, 2.0 + 1e-9], [1.0, 2.0])
    assert capsys.readouterr().out.startswith("[pass] q-values")
    assert not check_number("return", [1.0, 2.0], 1.0)
    assert "expected a single number, got list of shape (2,)" in capsys.readouterr().out
    assert not check_number("return", 1.5, 1.0, hint="sum the rewards")
    assert capsys.readouterr().out.strip() == "[not yet] return: got 1.5, expected 1; sum the rewards"
