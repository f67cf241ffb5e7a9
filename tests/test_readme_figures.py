"""The figures the README promises for its runnable examples are the figures those examples print.

Each test reads both the commands and the figure out of the README (or the Makefile the README's quickstart runs),
so that changing one without the other fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import gymnasium as gym
import pytest

from palaestra.cli import main
from tests.test_readme import README, cli_commands, fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
TEXT = README.read_text()


def block_with(language: str, marker: str) -> str:
    """The README's only fenced ``language`` block that contains ``marker``."""
    blocks = [block for block in fenced_blocks(TEXT, language) if marker in block]
    assert len(blocks) == 1, f"expected one {language} block with {marker!r}, found {len(blocks)}"
    return blocks[0]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``palaestra ARGV`` in-process; its standard output."""
    capsys.readouterr()
    assert main(argv) == 0, argv
    return capsys.readouterr().out


# --- Multi-turn LLM agents: the GRPO recipe on ToolSearch-v0 --------------------------------------------------------
GRPO_FIGURE = re.compile(
    r"prints `mean return (?P<mean>[\d.]+) \(95% CI (?P<low>[\d.]+) to (?P<high>[\d.]+)\) over (?P<episodes>\d+) "
    r"episodes \.\.\.\s+success rate (?P<success>\d+)%`"
)


def test_the_grpo_figure_is_found_in_the_readme() -> None:
    commands = cli_commands([block_with("bash", "--algo grpo --env ToolSearch-v0 --model tiny")])
    assert [command[0] for command in commands] == ["train", "eval"]
    assert GRPO_FIGURE.search(TEXT) is not None, "the README's GRPO paragraph no longer states its figure"


@pytest.mark.slow
def test_readme_grpo_recipe_prints_the_readme_figure(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("bm25s")
    train, evaluate = cli_commands([block_with("bash", "--algo grpo --env ToolSearch-v0 --model tiny")])
    figure = GRPO_FIGURE.search(TEXT)
    assert figure is not None
    monkeypatch.chdir(tmp_path)  # the commands write runs/grpo relative to the working directory
    run_cli(train, capsys)
    out = run_cli(evaluate, capsys)
    expected = f"mean return {figure['mean']} (95% CI {figure['low']} to {figure['high']}) over {figure['episodes']} episodes"
    assert expected in out, out
    assert f"success rate {figure['success']}%" in out, out


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

    intro = re.search(
        r'`split="dev"`, `reset\(seed=(?P<seed>\d+), options=\{"hops": (?P<hops>\d+)\}\)`.*?'
        r"`max_doc_chars=(?P<chars>\d+)`.*?reward (?P<reward>[\d.]+):",
        TEXT,
        re.DOTALL,
    )
    assert intro is not None, "the README no longer introduces its oracle transcript"
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
    """The README's examples-table row of ``python examples/<script>``."""
    rows = [line for line in TEXT.splitlines() if line.startswith(f"| `python examples/{script}`")]
    assert len(rows) == 1, f"expected one examples-table row for {script}"
    return rows[0]


def test_write_a_policy_prints_the_readme_returns_at_its_defaults() -> None:
    from tests.test_examples import load_example

    promised = re.search(
        r"holds (?P<pd>\d+) on the nominal and the long, heavy pole \((?P<weak>\d+) with a weak motor\) "
        r"where P manages (?P<low>\d+)-(?P<high>\d+)",
        example_row("write_a_policy.py"),
    )
    assert promised is not None, "the README no longer states write_a_policy.py's returns"
    table = load_example("write_a_policy").main([])
    pd, p = table["PD (angle, spin)"], table["P (angle)"]
    assert pd["nominal"] == pd["long heavy pole"] == float(promised["pd"])
    assert round(pd["weak motor"]) == int(promised["weak"])
    assert (round(min(p.values())), round(max(p.values()))) == (int(promised["low"]), int(promised["high"]))


def test_tool_agent_prints_the_readme_success_rates_at_its_defaults() -> None:
    pytest.importorskip("bm25s")
    from tests.test_examples import load_example

    promised = re.search(r"success rates: oracle (?P<oracle>[\d.]+), random (?P<random>[\d.]+)", example_row("tool_agent.py"))
    assert promised is not None, "the README no longer states tool_agent.py's success rates"
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
        exec(compile(code, "README.md", "exec"), {})
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
    assert promised is not None, "the README no longer states offline_rl.py's scores"
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

    promised = re.search(
        r"Pendulum uses palaestra's own: (?P<low>-?[\d.]+) \(uniform random\s+policy\) and (?P<high>-?[\d.]+)", TEXT
    )
    assert promised is not None, "the README no longer states pendulum's reference scores"
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

    assert "(100% exact match on dev and hot)" in TEXT
    env = gym.make("ToolSearch-v0", split=split)
    result = palaestra.evaluate(OracleSearchPolicy(env), env, n_episodes=20, seed=0)
    assert result.successes is not None and bool(result.successes.all()), result
