"""Sphinx configuration of palaestra's documentation (``make docs`` builds it into build/docs)."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS), str(ROOT)]

import palaestra  # noqa: E402  (after the path set-up, so that a source checkout is documented)

project = "palaestra"
author = "palaestra developers"
copyright = "palaestra developers"
release = version = palaestra.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinxarg.ext",
    "palaestra_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/_generated/ holds included pages (not documents of their own) and, in _generated/api/, autosummary's stubs.
exclude_patterns = ["_generated/*.md", "_generated/[!a]*/**"]
html_theme = "furo"
html_title = f"palaestra {release}"

# --- cross-references: nitpicky, with no intersphinx (the build is offline) ------------------------------------------
nitpicky = True
# Names from other packages (no inventories offline) and private or typing-only names in signatures.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(gym|gymnasium|np|numpy|th|torch|nn|stable_baselines3|sb3_contrib|minari|h5py|scipy|transformers|"
        r"tokenizers|textworld|bm25s|matplotlib|ray|rliable|pandas|tqdm|rich|typing|typing_extensions|collections|abc|"
        r"os|pathlib|argparse|enum|dataclasses|io|contextlib|types)\..*",
    ),
    (
        r"py:.*",
        r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|Protocol|TypeVar|Path|Tensor|ndarray|NDArray|"
        r"GymEnv|Schedule|VecEnv|ActorCriticPolicy|BaseCallback|MaybeCallback|BasePolicy|Env|Space|ObsType|ActType|"
        r"PreTrainedModel|PreTrainedTokenizerBase|Figure|Axes|SelfPROPS|optional|callable|array-like)",
    ),
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),  # private helpers named in public docstrings
    (r"py:.*", r"palaestra\.envs\.control\.common\.P"),  # a TypeVar
    # module constants and instance attributes that have no doc-comment of their own
    (r"py:(data|attr)", r"(TASKS|ALGORITHMS|LOG_ROWS|SFT_LOG_ROWS|history|algorithm)"),
    # Stable-Baselines3 and Gymnasium names that docstrings cite unqualified
    (
        r"py:.*",
        r"(RolloutBuffer|OnPolicyAlgorithm|BaseAlgorithm|PPO|SAC|TD3|DQN|ResetNeeded|InvalidAction|"
        r"DependencyNotInstalled|TimeLimit|Wrapper|ObservationWrapper|ActionWrapper)(\..*)?",
    ),
]
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# --- API reference ----------------------------------------------------------------------------------------------------
autosummary_generate = True
templates_path = ["_templates"]
autosummary_imported_members = False
# Each object is documented where it is defined: a package's re-exports (its ``__all__``) link there.
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Where a link from an included page to a repository file that is not a page of the site points.
REPOSITORY = "https://github.com/palaestra-rl/palaestra/blob/main"
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s]+)(?P<tail>[^)]*\))")


def relink(markdown: str, source_dir: Path, page_dir: Path) -> str:
    """Rewrite the relative links of a file from ``source_dir`` for a page in ``page_dir`` that includes it.

    MyST resolves an included file's links from the including page. Pages of the site and files that exist (lessons,
    images) keep a relative link; other Markdown files of the repository (the README) link to the repository.
    """

    def fix(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (source_dir / path).resolve()
        if resolved.suffix == ".md" and not resolved.is_relative_to(DOCS) and resolved.is_relative_to(ROOT):
            new = f"{REPOSITORY}/{resolved.relative_to(ROOT).as_posix()}"
        else:
            new = Path(os.path.relpath(resolved, page_dir)).as_posix()
        return f"{match['head']}{new}{'#' + anchor if anchor else ''}{match['tail']}"

    return LINK.sub(fix, markdown)


# Claim files the agent pages include, one per page (written by gallery.py from benchmarks/results/*.json).
CLAIMS = ("props", "drrpo", "sqirl", "offline_scores", "a2pr", "cdsa", "pgd", "llm")


def generate(app: Sphinx) -> None:
    """Write docs/_generated/: the gallery and claim tables (docs/gallery.py, if present) and the course page."""
    log = logging.getLogger("palaestra.docs")
    GENERATED.mkdir(exist_ok=True)
    shutil.rmtree(GENERATED / "api", ignore_errors=True)  # autosummary rewrites every stub; none is left stale
    if (DOCS / "gallery.py").exists():
        importlib.import_module("gallery").main(GENERATED)
    else:
        log.info("docs/gallery.py is not there yet: the gallery and the claim tables are placeholders")
    placeholder = "*Not generated in this build: docs/gallery.py writes this page from benchmarks/results/.*\n"
    if not (GENERATED / "gallery.md").exists():
        (GENERATED / "gallery.md").write_text(placeholder)
    (GENERATED / "claims").mkdir(exist_ok=True)
    for name in CLAIMS:
        if not (GENERATED / "claims" / f"{name}.md").exists():
            (GENERATED / "claims" / f"{name}.md").write_text(placeholder)
    course = GENERATED / "course"
    shutil.rmtree(course, ignore_errors=True)
    course.mkdir()
    readme = ROOT / "course" / "README.md"
    if readme.exists():  # included by docs/course.md, so its links are rewritten relative to docs/
        (course / "README.md").write_text(relink(readme.read_text(), readme.parent, DOCS))
    else:
        (course / "README.md").write_text("*The teacher's guide, `course/README.md`, is not written yet.*\n")


def setup(app: Sphinx) -> None:
    """Generate docs/_generated/ before autosummary writes its stubs there."""
    app.connect("builder-inited", generate, priority=100)
