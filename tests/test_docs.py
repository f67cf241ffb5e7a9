"""The documentation site builds with warnings as errors, and the README's links into it resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import DOCS_DIR, README, ROOT

# Markdown links and images: [text](target) or ![alt](target); the target up to a space, a quote or the bracket.
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s\"']+)")


def local_targets(markdown: str) -> list[str]:
    """The targets of a page's links to files (no URLs, no in-page anchors), with their ``#anchor`` if any."""
    targets = [match["target"] for match in LINK.finditer(markdown)]
    return [target for target in targets if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


def local_links(markdown: str) -> list[str]:
    """The files a page links to, anchors dropped."""
    return [target.split("#")[0] for target in local_targets(markdown)]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub (and MyST, with ``myst_heading_anchors``) gives a page's headings, code blocks skipped."""
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_heading_anchors_follow_githubs_rule_and_skip_code() -> None:
    text = "# TD3+BC and IQL\n```bash\n# not a heading\n```\n## DR-RPO\n### Results from `benchmarks/results/`\n"
    assert heading_anchors(text) == {"td3bc-and-iql", "dr-rpo", "results-from-benchmarksresults"}


def test_local_links_finds_files_and_skips_urls_and_anchors() -> None:
    text = "[a](docs/index.md) ![b](x/y.png) [c](https://example.org) [d](#here) [e](docs/cli.md#reference)"
    assert local_links(text) == ["docs/index.md", "x/y.png", "docs/cli.md"]


README_LINKS = local_links(README.read_text())


def test_readme_links_to_the_docs_pages() -> None:
    pages = {target for target in README_LINKS if target.startswith("docs/")}
    assert len(pages) >= 8, pages  # the front page points to the pages its sections moved to


@pytest.mark.parametrize("target", sorted(set(README_LINKS)))
def test_every_readme_link_resolves_to_a_file(target: str) -> None:
    assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"


def test_every_docs_page_the_readme_names_is_a_page_of_the_site() -> None:
    """A link to docs/X.md is only useful if X.md is built: it is not excluded as generated content."""
    for target in README_LINKS:
        if target.startswith("docs/") and target.endswith(".md"):
            assert "_generated" not in target, target


@pytest.mark.parametrize("target", sorted({target for target in local_targets(README.read_text()) if "#" in target}))
def test_every_readme_link_to_a_section_finds_its_heading(target: str) -> None:
    path, anchor = target.split("#", 1)
    assert anchor in heading_anchors((ROOT / path).read_text()), f"README.md links to {target}: no such heading in {path}"


@pytest.mark.slow
def test_the_docs_build_without_a_warning(tmp_path: Path) -> None:
    """``make docs``'s command: warnings as errors, nitpicky cross-references, every page in a toctree."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS_DIR), str(tmp_path / "html")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    pages = ("index", "getting-started", "cli", "api", "envs/control", "agents/props", "agents/td3bc-iql", "course")
    for page in (*pages, "gallery"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page


def test_an_included_pages_links_are_rewritten_for_the_page_that_includes_it() -> None:
    """course/README.md is included by docs/course.md: its links must resolve from docs/, as MyST reads them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_conf", DOCS_DIR / "conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    text = "[one](01_gym_interface.py) [cli](../docs/cli.md#reference) [home](../README.md) [web](https://x.org) [up](#top)"
    assert conf.relink(text, ROOT / "course", DOCS_DIR) == (
        "[one](../course/01_gym_interface.py) [cli](cli.md#reference) "
        f"[home]({conf.REPOSITORY}/README.md) [web](https://x.org) [up](#top)"
    )


# The site's generated tables, ```{palaestra-...} ARGUMENT with :option: lines, as the pages call them.
DIRECTIVE = re.compile(r"^```\{(?P<name>palaestra-[a-z]+)\}[ \t]*(?P<argument>\S*)\n(?P<options>(?::[^\n]*\n)*)", re.MULTILINE)
DOCS_PAGES = sorted(path for path in DOCS_DIR.glob("**/*.md") if "_generated" not in path.relative_to(DOCS_DIR).parts)
DIRECTIVES = [
    (str(path.relative_to(ROOT)), match["name"], match["argument"], match["options"])
    for path in DOCS_PAGES
    for match in DIRECTIVE.finditer(path.read_text())
]


def test_the_pages_call_the_generated_tables() -> None:
    assert {name for _, name, _, _ in DIRECTIVES} >= {"palaestra-envs", "palaestra-hyperparams", "palaestra-envdoc"}


DIRECTIVE_IDS = [f"{page}:{name} {argument}" for page, name, argument, _ in DIRECTIVES]


@pytest.mark.parametrize(("page", "name", "argument", "options"), DIRECTIVES, ids=DIRECTIVE_IDS)
def test_every_generated_table_names_what_exists(page: str, name: str, argument: str, options: str) -> None:
    """Without building the site: the classes the pages document import, and every id pattern matches a registered id."""
    import fnmatch
    import importlib

    import palaestra

    if name in ("palaestra-hyperparams", "palaestra-envdoc"):
        module, _, attribute = argument.partition(":") if ":" in argument else argument.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), f"{page} documents {argument}, which does not exist"
    if name == "palaestra-envs":
        patterns = re.search(r":ids:(.*)", options)
        assert patterns is not None, f"{page}: a palaestra-envs table without :ids:"
        for pattern in patterns[1].split():
            assert fnmatch.filter(palaestra.list_envs(), pattern), f"{page}: no registered id matches {pattern}"
