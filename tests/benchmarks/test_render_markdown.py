"""Each benchmark's render_markdown(payload) renders its README section from a results file, writing nothing."""

import json

import pytest

from benchmarks import (
    cdsa_risk,
    harness,
    llm_agents,
    offline_scores,
    online_drrpo,
    online_props,
    online_sqirl,
    pgd_downstream,
    pgd_dynamics,
)
from benchmarks.harness import RESULTS_DIR


def load(name):
    return json.loads((RESULTS_DIR / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _no_readme_writes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("render_markdown must not write the README")

    monkeypatch.setattr(harness, "render_readme_section", refuse)
    modules = (cdsa_risk, llm_agents, offline_scores, online_drrpo, online_props, online_sqirl, pgd_downstream, pgd_dynamics)
    for module in modules:
        monkeypatch.setattr(module, "render_readme_section", refuse)


def test_online_renderers_show_the_saved_summaries():
    props = load("online_props")
    mean, low, high = props["summary"]["RobustCartPole-v0"]["PPO"]["mean_return"]
    body = online_props.render_markdown(props)
    assert "| RobustCartPole-v0 | PPO | " in body and f"{mean:.3g} [{low:.3g}, {high:.3g}]" in body
    assert "`results/online_props_fixed_target.png`" in body
    swimmer = online_props.render_markdown(load("online_props_swimmer"), "online_props_swimmer")
    assert "--name online_props_swimmer" in swimmer and "Fixed target" not in swimmer

    drrpo = load("online_drrpo")
    arm = next(iter(drrpo["put_option"]["arms"].values()))
    assert f"{arm['mean'][0]:.3f} [" in online_drrpo.render_markdown(drrpo)

    sqirl = load("online_sqirl")
    body = online_sqirl.render_markdown(sqirl)
    assert f"MDPs solved (median seed): SQIRL {sqirl['solved']['sqirl']}" in body
    assert f"| {sqirl['rows'][0]['mdp']} | {sqirl['rows'][0]['effective_horizon']:.2f} |" in body


def test_offline_renderers_show_the_saved_scores():
    cdsa = load("cdsa_risk")
    assert f"{cdsa['args']['episodes']} evaluation episodes" in cdsa_risk.render_markdown(cdsa)

    downstream = load("pgd_downstream")
    assert "| TD3+BC | real | 3 |" in pgd_downstream.render_markdown(downstream)
    assert pgd_downstream.render_markdown({**downstream, "results": {}}) == ""  # nothing finished: nothing to show

    dynamics = load("pgd_dynamics")
    assert "Finding: PGD's error" in pgd_dynamics.render_markdown(dynamics)

    hopper = load("offline_scores_hopper")
    body = offline_scores.render_markdown(hopper["args"], hopper, "offline_scores_hopper")
    assert f"| hopper-medium-v0 | {hopper['data_scores']['hopper-medium-v0']:.1f} | td3bc | 3 |" in body
    assert "`benchmarks/results/offline_scores_hopper.png`" in body
    unscored = offline_scores.render_markdown(hopper["args"], {**hopper, "data_scores": {}}, "offline_scores_hopper")
    assert "| hopper-medium-v0 | - | td3bc |" in unscored  # a missing data score is shown, not computed


def test_llm_renderer_names_the_plots_after_the_results_file():
    payload = load("llm_agents_1hop")  # saved as llm_agents.json before the file was renamed
    body = llm_agents.render_markdown(payload, "llm_agents_1hop")
    assert "results/llm_agents_1hop_dev_em.png" in body
    assert f"| grpo | {payload['summary']['grpo']['final_train_em']:.3g} |" in body
    assert "dev EM - SFT start" not in body  # that older file has no such column
    assert "dev EM - SFT start" in llm_agents.render_markdown(load("llm_agents_2hop"))
    assert llm_agents.section(load("llm_agents_3hop")) == "Multi-turn LLM agents: 3-hop questions"
