"""The figures the README and the documentation pages promise for their runnable examples are what those examples print.

Each test reads both the commands and the figure out of the pages (README.md and docs/**/*.md, or the Makefile the
quickstart runs), so that changing one without the other fails. A figure may be quoted on several pages (the front
page and the page the section lives on): every quotation must agree, and moving a section between pages keeps it
tested.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import gymnasium as gym
import pytest

from palaestra.cli import main
from tests.test_readme import DOCS, ROOT, cli_commands, fenced_blocks, page_name

TEXTS = {page: page.read_text() for page in DOCS}


def block_with(language: str, marker: str) -> str:
    """The fenced ``language`` block that contains ``marker``, on whichever pages quote it (the same on each)."""
    found = [(page, block) for page, text in TEXTS.items() for block in fenced_blocks(text, language) if marker in block]
    assert found, f"no page has a {language} block with {marker!r}"
    pages = sorted({page_name(page) for page, _ in found})
    assert len({block for _, block in found}) == 1, f"pages quote different {language} blocks with {marker!r}: {pages}"
    return found[0][1]


def figure(pattern: re.Pattern[str] | str, flags: int = 0) -> re.Match[str] | None:
    """The first match of ``pattern`` on the pages; every page that matches must state the same figures."""
    matches = [match for text in TEXTS.values() if (match := re.search(pattern, text, flags)) is not None]
    assert len({tuple(sorted(match.groupdict().items())) for match in matches}) <= 1, [m.group(0) for m in matches]
    return matches[0] if matches else None


def anywhere(phrase: str) -> bool:
    """Whether some page says ``phrase``."""
    return any(phrase in text for text in TEXTS.values())


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``palaestra ARGV`` in-process; its standard output."""
    capsys.readouterr()
    assert main(argv) == 0, argv
    return capsys.readouterr().out


def train_and_evaluate_print_the_figure(
    marker: str, pattern: re.Pattern[str], capsys: pytest.CaptureFixture[str]
) -> re.Match[str]:
    """Run the page's train and eval commands (the bash block with ``marker``); eval prints the promised figure."""
    train, evaluate = cli_commands([block_with("bash", marker)])
    promised = figure(pattern)
    assert promised is not None
    run_cli(train, capsys)
    out = run_cli(evaluate, capsys)
    expected = (
        f"mean return {promised['mean']} (95% CI {promised['low']} to {promised['high']}) over {promised['episodes']} episodes"
    )
    assert expected in out, out
    assert f"success rate {promised['success']}%" in out, out
    return promised


# --- Multi-turn LLM agents: the GRPO recipe on ToolSearch-v0 --------------------------------------------------------
GRPO_FIGURE = re.compile(
    r"prints `mean return (?P<mean>[\d.]+) \(95% CI (?P<low>[\d.]+) to (?P<high>[\d.]+)\) over (?P<episodes>\d+) "
    r"episodes \.\.\.\s+success rate (?P<success>\d+)%` \(on this project's test machine"
)


def test_the_grpo_figure_is_found_in_the_readme() -> None:
    commands = cli_commands([block_with("bash", "--algo grpo --env ToolSearch-v0 --model tiny")])
    assert [command[0] for command in commands] == ["train", "eval"]
    assert figure(GRPO_FIGURE) is not None, "the GRPO paragraph no longer states its figure"


@pytest.mark.slow
def test_readme_grpo_recipe_prints_the_readme_figure(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("bm25s")
    monkeypatch.chdir(tmp_path)  # the commands write runs/grpo relative to the working directory
    train_and_evaluate_print_the_figure("--algo grpo --env ToolSearch-v0 --model tiny", GRPO_FIGURE, capsys)


# --- SB3 on text envs: MaskablePPO on ToolSearch-v0 through candidate actions -------------------------------------
MPPO_MARKER = "--algo maskable-ppo --env ToolSearch-v0"
MPPO_FIGURE = re.compile(
    r"prints `mean return (?P<mean>[\d.]+) \(95% CI (?P<low>[\d.]+) to (?P<high>[\d.]+)\) over (?P<episodes>\d+) "
    r"episodes \.\.\.\s+success rate (?P<success>\d+)%` on the hot world, where a uniform choice among the candidates "
    r"scores (?P<chance>[\d.]+)"
)


def test_the_maskable_ppo_figure_is_found_in_the_readme() -> None:
    commands = cli_commands([block_with("bash", MPPO_MARKER)])
    assert [command[0] for command in commands] == ["train", "eval"]
    assert "split=hot" in commands[1]
    assert figure(MPPO_FIGURE) is not None, "the MaskablePPO paragraph no longer states its figure"


@pytest.mark.slow
def test_readme_maskable_ppo_commands_print_the_readme_figure(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("bm25s")
    monkeypatch.chdir(tmp_path)
    promised = train_and_evaluate_print_the_figure(MPPO_MARKER, MPPO_FIGURE, capsys)
    assert float(promised["mean"]) > float(promised["chance"]) + 0.1  # the claim the figure backs


# --- Quickstart: make demo ------------------------------------------------------------------------------------------
def demo_commands() -> list[list[str]]:
    """The ``palaestra`` commands of the Makefile's ``demo`` target, ``$(DEMO_DIR)`` left as a placeholder."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return [
        shlex.split(line.strip().removeprefix("$(BIN)/palaestra"))
        for line in recipe.splitlines()
        if line.strip().startswith("$(BIN)/palaestra")
    ]


def test_demo_output_block_has_one_line_per_evaluation() -> None:
    evaluations = [command for command in demo_commands() if command[0] == "eval"]
    assert len(block_with("", "RobustCartPole-v0: mean return").splitlines()) == len(evaluations) == 3


@pytest.mark.slow
def test_make_demo_prints_the_readme_lines(tmp_path, capsys) -> None:
    expected = block_with("", "RobustCartPole-v0: mean return").splitlines()
    printed = []
    for command in demo_commands():
        argv = [str(tmp_path / "demo") if word == "$(DEMO_DIR)" else word for word in command]
        out = run_cli(argv, capsys)
        if command[0] == "eval":
            printed.append(out.strip())
    assert printed == expected


# --- ToolSearch-v0: the oracle transcript ---------------------------------------------------------------------------
def test_toolsearch_oracle_transcript_is_what_render_prints() -> None:
    pytest.importorskip("bm25s")
    from palaestra.agents.text_baselines import OracleSearchPolicy

    intro = figure(
        r'`split="dev"`, `reset\(seed=(?P<seed>\d+), options=\{"hops": (?P<hops>\d+)\}\)`.*?'
        r"`max_doc_chars=(?P<chars>\d+)`.*?reward (?P<reward>[\d.]+):",
        re.DOTALL,
    )
    assert intro is not None, "no page introduces the oracle transcript any more"
    env = gym.make("ToolSearch-v0", max_doc_chars=int(intro["chars"]), render_mode="ansi")
    oracle = OracleSearchPolicy(env)
    observation, _ = env.reset(seed=int(intro["seed"]), options={"hops": int(intro["hops"]), "split": "dev"})
    done, reward = False, 0.0
    while not done:
        message, _ = oracle.predict(observation)
        observation, reward, terminated, truncated, _ = env.step(message)
        done = terminated or truncated
    assert reward == float(intro["reward"])
    assert env.render().strip() == block_with("text", "Answer the question below by searching").strip()


# --- Examples: the "prints (defaults)" column ----------------------------------------------------------------------
def example_row(script: str) -> str:
    """The examples-table row of ``python examples/<script>`` (the same on every page that has the table)."""
    rows = [line for text in TEXTS.values() for line in text.splitlines() if line.startswith(f"| `python examples/{script}`")]
    assert rows, f"no page has an examples-table row for {script}"
    assert len(set(rows)) == 1, f"the pages' examples-table rows for {script} differ: {rows}"
    return rows[0]


def test_write_a_policy_prints_the_readme_returns_at_its_defaults() -> None:
    from tests.test_examples import load_example

    promised = re.search(
        r"holds (?P<pd>\d+) on the nominal and the long, heavy pole \((?P<weak>\d+) with a weak motor\) "
        r"where P manages (?P<low>\d+)-(?P<high>\d+)",
        example_row("write_a_policy.py"),
    )
    assert promised is not None, "the examples table no longer states write_a_policy.py's returns"
    table = load_example("write_a_policy").main([])
    pd, p = table["PD (angle, spin)"], table["P (angle)"]
    assert pd["nominal"] == pd["long heavy pole"] == float(promised["pd"])
    assert round(pd["weak motor"]) == int(promised["weak"])
    assert (round(min(p.values())), round(max(p.values()))) == (int(promised["low"]), int(promised["high"]))


def test_tool_agent_prints_the_readme_success_rates_at_its_defaults() -> None:
    pytest.importorskip("bm25s")
    from tests.test_examples import load_example

    promised = re.search(r"success rates: oracle (?P<oracle>[\d.]+), random (?P<random>[\d.]+)", example_row("tool_agent.py"))
    assert promised is not None, "the examples table no longer states tool_agent.py's success rates"
    rates = load_example("tool_agent").main([])
    for name in ("oracle", "random"):
        assert {f"{rate:.2f}" for rate in rates[name].values()} == {promised[name]}, rates


# --- Evaluation: the PPO example ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_evaluation_example_prints_the_readme_result_on_one_thread(capsys) -> None:
    import torch

    block = block_with("python", 'model = PPO("MlpPolicy", "RobustCartPole-v0", seed=0)')
    code = block.split("result.returns")[0]  # the lines up to the print; the rest reads attributes
    promised = re.search(r"print\(result\)  # (?P<line>mean return .+)", code)
    assert promised is not None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "the evaluation example", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.strip() == promised["line"]


# --- examples/offline_rl.py at its defaults -------------------------------------------------------------------------
@pytest.mark.slow
def test_offline_rl_prints_the_readme_scores_at_its_defaults(tmp_path, monkeypatch) -> None:
    import torch

    from tests.test_examples import load_example

    promised = re.search(
        r"data (?P<data>-?[\d.]+), TD3\+BC (?P<td3bc>-?[\d.]+), IQL (?P<iql>-?[\d.]+) after (?P<steps>[\d,]+) gradient steps",
        example_row("offline_rl.py"),
    )
    assert promised is not None, "the examples table no longer states offline_rl.py's scores"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's __main__ does
    try:
        module = load_example("offline_rl")
        assert f"default={promised['steps'].replace(',', '')}" in Path(module.__file__).read_text()
        scores = module.main([])
    finally:
        torch.set_num_threads(threads)
    assert {name: f"{score:.1f}" for name, score in scores.items()} == {
        "data": promised["data"],
        "TD3+BC": promised["td3bc"],
        "IQL": promised["iql"],
    }


# --- Offline reference scores and the text baselines ----------------------------------------------------------------
def test_pendulum_reference_scores_are_what_the_script_measures() -> None:
    import importlib.util

    from palaestra.envs.offline import specs
    from palaestra.envs.offline.policies import UniformRandomPolicy, load_behaviour_policy

    promised = figure(r"Pendulum uses palaestra's own: (?P<low>-?[\d.]+) \(uniform random\s+policy\) and (?P<high>-?[\d.]+)")
    assert promised is not None, "no page states pendulum's reference scores any more"
    spec = importlib.util.spec_from_file_location(
        "pendulum_reference_scores", ROOT / "scripts" / "pendulum_reference_scores.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    random_policy = UniformRandomPolicy(gym.make("Pendulum-v1").action_space)
    measured = (
        script.mean_return(random_policy, False),
        script.mean_return(load_behaviour_policy("pendulum", "expert"), True),
    )
    pendulum = specs.TASKS["pendulum"]
    assert (f"{measured[0]:.1f}", f"{measured[1]:.1f}") == (promised["low"], promised["high"])
    assert (round(pendulum.ref_min_score, 1), round(pendulum.ref_max_score, 1)) == (
        float(promised["low"]),
        float(promised["high"]),
    )


@pytest.mark.parametrize("split", ["dev", "hot"])
def test_the_oracle_answers_every_question_exactly_on_dev_and_hot(split) -> None:
    pytest.importorskip("bm25s")
    import palaestra
    from palaestra.agents.text_baselines import OracleSearchPolicy

    assert anywhere("(100% exact match on dev and hot)")
    env = gym.make("ToolSearch-v0", split=split)
    result = palaestra.evaluate(OracleSearchPolicy(env), env, n_episodes=20, seed=0)
    assert result.successes is not None and bool(result.successes.all()), result
