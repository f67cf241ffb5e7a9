"""The examples of the README and of every documentation page (docs/**/*.md) stay true.

Each page's Python imports and reads names that exist and binds what it uses (every page on its own, as a reader
meets it), and its ``palaestra`` commands parse, with algorithms and env ids that are registered.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import re
import shlex
from pathlib import Path

import gymnasium as gym
import pytest

import palaestra  # noqa: F401  (registers the env ids the commands name)
from palaestra.agents import get_algorithm
from palaestra.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_DIR = ROOT / "docs"
# The README and the documentation's pages; docs/_generated/ holds what the build writes, not pages of its own.
DOCS = [README, *sorted(path for path in DOCS_DIR.glob("**/*.md") if "_generated" not in path.relative_to(DOCS_DIR).parts)]


def page_name(path: Path) -> str:
    """A page's path relative to the repository, for test ids and messages."""
    return str(path.relative_to(ROOT))


# Names an example leaves to the reader on purpose, keyed by a line of that example: the protocol sketch's types
# and a text agent's observations.
PLACEHOLDERS = {
    "class Policy(Protocol):": {"Protocol", "action", "state"},
    "agent.predict(first_observation)": {"first_observation", "obs_a", "obs_b"},
}
# Values for the placeholders of ``[--option VALUE]`` parts of the README's commands.
OPTION_VALUES = {"ID": "CartPole-v1", "N": "100", "S": "1"}


def fenced_blocks(markdown: str, language: str) -> list[str]:
    """The bodies of the fenced blocks opened with ```language, in order."""
    blocks: list[str] = []
    opened: str | None = None
    lines: list[str] = []
    for line in markdown.splitlines():
        if not line.startswith("```"):
            lines.append(line)
        elif opened is None:
            opened, lines = line[3:].strip(), []
        else:
            if opened == language:
                blocks.append("\n".join(lines) + "\n")
            opened = None
    return blocks


def cli_commands(bash_blocks: list[str]) -> list[list[str]]:
    """The ``palaestra ...`` command lines of bash blocks as argv lists, without comments.

    A line with ``[optional]`` parts gives two commands: without them, and with all of them (placeholder values
    filled in from :data:`OPTION_VALUES`).
    """
    commands: list[list[str]] = []
    for block in bash_blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0]
            if not line.strip().startswith("palaestra "):
                continue
            commands.append(shlex.split(re.sub(r"\[[^\]]*\]", "", line))[1:])
            if "[" in line:
                words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
                commands.append([OPTION_VALUES.get(word, word) for word in words])
    return commands


def bound_and_used(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names a block binds (imports, assignments, loop targets, definitions, arguments) and names it reads."""
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, used


def unbound_names(blocks: list[str]) -> dict[int, set[str]]:
    """Per block, the names a statement reads before it, an earlier statement or an earlier block binds them.

    Builtins are known everywhere; a block's :data:`PLACEHOLDERS` in that block only.
    """
    known = set(dir(builtins))
    missing: dict[int, set[str]] = {}
    for index, block in enumerate(blocks):
        placeholders = set().union(*(names for line, names in PLACEHOLDERS.items() if line in block))
        for statement in ast.parse(block).body:
            bound, used = bound_and_used(statement)
            known |= bound  # names a statement binds count inside it (a loop variable, a function's arguments)
            missing.setdefault(index, set()).update(used - known - placeholders)
        if not missing[index]:
            del missing[index]
    return missing


def import_aliases(tree: ast.AST) -> dict[str, tuple[str, str | None]]:
    """The names a tree's imports bind, each to its ``(module, name)``; ``name`` is None for ``import module``."""
    aliases: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {alias.asname or alias.name: (alias.name, None) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases |= {alias.asname or alias.name: (node.module, alias.name) for alias in node.names}
    return aliases


def imported_names(blocks: list[str]) -> set[tuple[str, str | None]]:
    """Every ``(module, name)`` the blocks import; ``name`` is None for ``import module``."""
    return {target for block in blocks for target in import_aliases(ast.parse(block)).values()}


def imported_attributes(blocks: list[str]) -> set[tuple[str, str | None, str]]:
    """Every ``(module, name, attribute)`` read as ``alias.attribute`` from an imported module or name."""
    aliases: dict[str, tuple[str, str | None]] = {}
    attributes: set[tuple[str, str | None, str]] = set()
    for block in blocks:
        tree = ast.parse(block)
        aliases |= import_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                attributes.add((*aliases[node.value.id], node.attr))
    return attributes


PAGE_BLOCKS = {page: fenced_blocks(page.read_text(), "python") for page in DOCS}
BLOCKS = [block for blocks in PAGE_BLOCKS.values() for block in blocks]
PAGE_COMMANDS = [(page, argv) for page in DOCS for argv in cli_commands(fenced_blocks(page.read_text(), "bash"))]
COMMANDS = [argv for _, argv in PAGE_COMMANDS]


def command_id(page: Path, argv: list[str]) -> str:
    return f"{page_name(page)}: {' '.join(argv)}"


def test_the_docs_pages_are_found() -> None:
    names = {page_name(page) for page in DOCS}
    assert {"README.md", "docs/index.md", "docs/getting-started.md"} <= names, names
    assert not any("_generated" in name for name in names)


def test_readme_and_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 10


def test_unbound_names_finds_a_name_used_before_it_is_bound() -> None:
    blocks = ["env = gym.make('CartPole-v1')", "import gymnasium as gym\nmodel.learn(10)\nmodel = 1", "print(env, gym)"]
    assert unbound_names(blocks) == {0: {"gym"}, 1: {"model"}}
    assert unbound_names(["print(obs_a)"]) == {0: {"obs_a"}}  # a placeholder only where its example stands


def test_cli_commands_checks_optional_parts_with_placeholder_values() -> None:
    commands = cli_commands(["palaestra eval --checkpoint runs/x [--env ID] [--json]\n"])
    assert commands == [
        ["eval", "--checkpoint", "runs/x"],
        ["eval", "--checkpoint", "runs/x", "--env", "CartPole-v1", "--json"],
    ]


@pytest.mark.parametrize("page", DOCS, ids=page_name)
def test_every_example_binds_the_names_it_uses(page: Path) -> None:
    """Each page on its own: a reader who lands on it runs its blocks in order, not the README's before them."""
    assert unbound_names(PAGE_BLOCKS[page]) == {}, page_name(page)


@pytest.mark.parametrize(("module", "name"), sorted(imported_names(BLOCKS), key=str))
def test_every_import_resolves(module: str, name: str | None) -> None:
    imported = importlib.import_module(module)
    if name is not None:
        assert hasattr(imported, name), f"the docs import {name} from {module}, which has no such name"


PAGE_ATTRIBUTES = {target for blocks in PAGE_BLOCKS.values() for target in imported_attributes(blocks)}


@pytest.mark.parametrize(("module", "name", "attribute"), sorted(PAGE_ATTRIBUTES, key=str))
def test_every_attribute_of_an_import_exists(module: str, name: str | None, attribute: str) -> None:
    imported = importlib.import_module(module)
    owner = imported if name is None else getattr(imported, name)
    assert hasattr(owner, attribute), f"the docs read {attribute} from {name or module}, which has no such attribute"


def test_cli_commands_joins_continuations_and_drops_comments() -> None:
    block = "palaestra train --algo ppo \\\n  --out runs/x  # a comment\nls runs\n"
    assert cli_commands([block]) == [["train", "--algo", "ppo", "--out", "runs/x"]]


def test_the_docs_have_a_command_for_every_subcommand() -> None:
    subcommands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    assert {command[0] for command in COMMANDS} == set(subcommands.choices)


@pytest.mark.parametrize(("page", "argv"), PAGE_COMMANDS, ids=[command_id(page, argv) for page, argv in PAGE_COMMANDS])
def test_every_command_parses_with_registered_names(page: Path, argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        get_algorithm(args.algo)
    env_ids = getattr(args, "env", None) or []  # train and eval take one id, collect a list
    for env_id in [env_ids] if isinstance(env_ids, str) else env_ids:
        gym.spec(env_id)


TRAIN_COMMANDS = [(page, argv) for page, argv in PAGE_COMMANDS if argv[0] == "train"]


@pytest.mark.parametrize(("page", "argv"), TRAIN_COMMANDS, ids=[command_id(page, argv) for page, argv in TRAIN_COMMANDS])
def test_every_train_command_passes_the_checks_before_training(page: Path, argv: list[str]) -> None:
    """Its hyperparameters have known names, types and ranges, and its env fits the algorithm's family."""
    from palaestra.agents.hyperparams import check_hyperparams
    from palaestra.cli import _check_env_fits, parse_assignments

    args = build_parser().parse_args(argv)
    spec = get_algorithm(args.algo)
    hyperparams = parse_assignments(args.hyperparams, "--hyperparams")
    if args.model is not None:
        hyperparams["model"] = args.model
    check_hyperparams(spec.name, spec.load_class(), hyperparams, spec.extra_hyperparams)
    env = gym.make(args.env, **parse_assignments(args.env_kwargs, "--env-kwargs"))
    try:
        _check_env_fits(spec, env, args.env)
    finally:
        env.close()
