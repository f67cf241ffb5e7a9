import pytest

from benchmarks import text_candidates

ARGS = {"steps": 100, "seeds": [0, 1], "train_worlds": 4, "eval_episodes": 10, "textworld_steps": 100,
        "textworld_game": "game_seeds=0"}  # fmt: skip


def toolsearch_run(agent, seed, dev, hot):
    return {"env": "ToolSearch-v0", "agent": agent, "seed": seed, "steps": 100, "seconds": 30.0,
            "em": {"dev": dev, "hot": hot}}  # fmt: skip


def test_report_gives_each_agents_mean_over_the_seeds_it_ran():
    runs = [toolsearch_run("random", 0, 0.1, 0.1), toolsearch_run("random", 1, 0.0, 0.1),
            toolsearch_run("maskable-ppo", 0, 0.3, 0.2), toolsearch_run("maskable-ppo", 1, 0.5, 0.4),
            {"env": "TextWorld-v0", "agent": "maskable-ppo", "seed": 0, "steps": 100, "seconds": 1.0,
             "win_rate": 0.5}]  # fmt: skip
    body = text_candidates.report({"args": ARGS, "runs": runs})
    assert "| random | 2 | 0.05 [0.00, 0.10] | 0.10 [0.10, 0.10] | - |" in body
    assert "| maskable-ppo | 2 | 0.40 [0.30, 0.50] | 0.30 [0.20, 0.40] | 30 |" in body
    assert "| ppo |" not in body  # no runs, no row
    assert "mean over seeds [0, 1]" in body and "wins 0.50 [0.50, 0.50] of 10 greedy episodes (1 seeds)" in body


@pytest.mark.slow
def test_a_quick_run_trains_every_agent(capsys):
    text_candidates.main(["--quick", "--agents", "random", "maskable-ppo", "ppo"])
    out = capsys.readouterr().out
    for agent in ("random", "maskable-ppo", "ppo"):
        assert f"ToolSearch-v0 {agent} seed 0: dev EM" in out
