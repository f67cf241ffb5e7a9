"""Sphinx directives that build palaestra's reference tables from the code at build time.

- ``palaestra-envs``: the registered env ids matching ``:ids:`` (shell patterns), with their descriptions and
  time limits and, with ``:spaces:``, the observation and action spaces of a freshly made env.
- ``palaestra-algorithms``: the table ``palaestra train --algo`` trains from (``:family:`` filters it).
- ``palaestra-hyperparams``: an agent class's constructor arguments and hyperparameters with their defaults.
- ``palaestra-lessons``: the course's lessons, ``course/NN_*.py``, each with its docstring's first line.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import warnings
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]

Cell = str | nodes.Node


def _cell(value: Cell) -> nodes.entry:
    entry = nodes.entry()
    paragraph = nodes.paragraph()
    paragraph += value if isinstance(value, nodes.Node) else nodes.Text(value)
    entry += paragraph
    return entry


def _code(text: str) -> nodes.literal:
    return nodes.literal(text, text)


def table(headers: list[str], rows: list[list[Cell]]) -> nodes.table:
    """A docutils table with a header row."""
    result = nodes.table(classes=["palaestra-generated"])
    group = nodes.tgroup(cols=len(headers))
    result += group
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    header_row = nodes.row()
    header_row.extend(_cell(header) for header in headers)
    head += header_row
    body = nodes.tbody()
    group += body
    for values in rows:
        row = nodes.row()
        row.extend(_cell(value) for value in values)
        body += row
    return result


def _import(target: str) -> Any:
    """The object named by ``"module:attribute"`` or ``"module.attribute"``."""
    module_name, _, attribute = target.partition(":") if ":" in target else target.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


class EnvTable(SphinxDirective):
    """The registered env ids matching ``:ids:`` (space-separated shell patterns)."""

    option_spec: ClassVar[dict[str, Any]] = {"ids": directives.unchanged_required, "spaces": directives.flag}

    def run(self) -> list[nodes.Node]:
        """The table of the matching ids."""
        import gymnasium as gym

        import palaestra

        patterns = self.options["ids"].split()
        ids = [env_id for env_id in palaestra.list_envs() if any(fnmatch.fnmatchcase(env_id, p) for p in patterns)]
        if not ids:
            raise self.error(f"no registered env id matches {patterns}")
        spaces = "spaces" in self.options
        headers = ["id", "description", "time limit"] + (["observation space", "action space"] if spaces else [])
        rows: list[list[Cell]] = []
        made: dict[tuple[str, str], tuple[Any, str, str]] = {}  # offline ids of one task share their env's spaces
        for env_id in ids:
            spec = gym.spec(env_id)
            limit = spec.max_episode_steps
            row: list[Cell] = [_code(env_id), palaestra.list_envs()[env_id]]
            if spaces:
                key = (str(spec.entry_point), str(spec.kwargs.get("task", env_id)))
                if key not in made:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        env = gym.make(env_id)
                    limit_made = getattr(env.spec, "max_episode_steps", None)
                    made[key] = (limit_made, str(env.observation_space), str(env.action_space))
                    env.close()
                made_limit, observation_space, action_space = made[key]
                row += [str(limit or made_limit or "set by the env"), _code(observation_space), _code(action_space)]
            else:
                row.append(str(limit or "set by the env"))
            rows.append(row)
        return [table(headers, rows)]


class AlgorithmTable(SphinxDirective):
    """The algorithms ``palaestra train --algo`` knows (``:family:`` keeps those of the given families)."""

    option_spec: ClassVar[dict[str, Any]] = {"family": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        """The table of the registered algorithms."""
        from palaestra.agents import ALGORITHMS

        families = self.options.get("family", "").split()
        rows: list[list[Cell]] = [
            [_code(name), spec.family, _code(spec.entry_point.replace(":", ".")), spec.description]
            for name, spec in ALGORITHMS.items()
            if not families or spec.family in families
        ]
        return [table(["--algo", "family", "class", "description"], rows)]


class HyperparameterTable(SphinxDirective):
    """An agent class's constructor arguments with defaults, and its ``DEFAULTS`` hyperparameters if it has them."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"exclude": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        """The table of the class's arguments and hyperparameters."""
        cls = _import(self.arguments[0])
        excluded = set(self.options.get("exclude", "").split())
        rows: list[list[Cell]] = []
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or name in excluded or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            default = "(required)" if parameter.default is parameter.empty else repr(parameter.default)
            rows.append([_code(name), _code(default) if parameter.default is not parameter.empty else default])
        for name, value in getattr(cls, "DEFAULTS", {}).items():
            if name not in excluded:
                rows.append([_code(name), _code(repr(value))])
        return [table(["argument", "default"], rows)]


class LessonList(SphinxDirective):
    """The course's lessons, ``course/NN_*.py``, in order, each with its docstring's first line."""

    def run(self) -> list[nodes.Node]:
        """The table of the lessons."""
        rows: list[list[Cell]] = []
        for path in sorted((ROOT / "course").glob("[0-9][0-9]_*.py")):
            self.env.note_dependency(str(path))
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            rows.append([_code(f"course/{path.name}"), docstring.strip().splitlines()[0] if docstring else ""])
        if not rows:
            return [nodes.paragraph(text="No lessons yet.")]
        return [table(["lesson", "what it teaches"], rows)]


def _is_env_page(lines: list[str]) -> bool:
    return any(line.startswith("## ") for line in lines)


def _env_family(obj: Any) -> str:
    return str(getattr(obj, "__module__", "")).split(".")[2] if str(getattr(obj, "__module__", "")).count(".") >= 2 else ""


def markdown_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Point an env class's Gymnasium-style (Markdown) docstring to its family's page, where it is rendered.

    Env docstrings are Markdown pages (``## Description``, tables, ...), which reST would misread.
    """
    if what == "class" and _is_env_page(lines) and _env_family(obj) in ("control", "text", "offline"):
        summary = lines[0]
        lines[:] = [
            summary,
            "",
            f"Its full page (description, spaces, rewards, episode end, arguments, version history) is on "
            f":doc:`/envs/{_env_family(obj)}`.",
        ]


class EnvDocstring(SphinxDirective):
    """An env class's Gymnasium-style docstring rendered as Markdown, its ``## Section`` headings as bold lead-ins."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Parse the docstring's Markdown into the page."""
        cls = _import(self.arguments[0])
        text = inspect.cleandoc(cls.__doc__ or "")
        text = "\n".join(f"**{line[3:].strip()}.**" if line.startswith("## ") else line for line in text.splitlines())
        container = nodes.container(classes=["palaestra-envdoc"])
        self.state.nested_parse(StringList(text.splitlines(), source=self.arguments[0]), self.content_offset, container)
        return [container]


_UNPARSED: dict[str, list[str]] = {}


def _keep_data_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Before napoleon: remember a constant's doc-comment (``#: Ranges of ...: name -> ...`` is prose, not a type)."""
    if what in ("data", "attribute"):
        _UNPARSED[name] = list(lines)


def _restore_data_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """After napoleon: put the constant's doc-comment back as written."""
    if what in ("data", "attribute") and name in _UNPARSED:
        lines[:] = _UNPARSED.pop(name)


def _lookup(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def resolve_to_definition(app: Sphinx, env: Any, node: nodes.Element, contnode: nodes.Node) -> nodes.Node | None:
    """Resolve a reference to a re-export or an inherited member to the object where it is defined and documented.

    ``palaestra.evaluate`` is documented as ``palaestra.evaluation.evaluate``, an agent's inherited ``predict`` on its
    base class; a name that imports to nothing of palaestra's is left unresolved (and nitpicky mode reports it).
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates[:0] = [f"{module}.{cls}.{target}", f"{module}.{target}"] if cls else [f"{module}.{target}"]
    domain = env.get_domain("py")
    if "." not in target:  # a bare name that palaestra documents exactly once: palaestra.protocol.Policy for Policy
        matches = [name for name in domain.objects if name.startswith("palaestra.") and name.endswith(f".{target}")]
        if len(matches) == 1:
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", matches[0], node, contnode)
            if resolved is not None:
                return resolved
    for candidate in candidates:
        obj = _lookup(candidate) if candidate.startswith("palaestra") else None
        defined_in, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if obj is None or not defined_in or not qualname or not defined_in.startswith("palaestra"):
            continue
        canonical = f"{defined_in}.{qualname}"
        if canonical == candidate:
            continue
        for role in ("obj", node["reftype"]):
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, role, canonical, node, contnode)
            if resolved is not None:
                return resolved
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and the docstring hooks."""
    app.connect("autodoc-process-docstring", _keep_data_docstring, priority=100)
    app.connect("autodoc-process-docstring", _restore_data_docstring, priority=900)
    app.connect("missing-reference", resolve_to_definition)
    app.add_directive("palaestra-envdoc", EnvDocstring)
    app.connect("autodoc-process-docstring", markdown_docstring)
    app.add_directive("palaestra-envs", EnvTable)
    app.add_directive("palaestra-algorithms", AlgorithmTable)
    app.add_directive("palaestra-hyperparams", HyperparameterTable)
    app.add_directive("palaestra-lessons", LessonList)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
