import pytest

from benchmarks import igpo_probe_cost


def test_report_states_the_step_ratio_and_the_probe_speed_up():
    row = {"hops": 2, "mean_turns": 3.5, "grpo_step_s": 0.2, "igpo_step_s": 0.23, "ratio": 1.15, "probe_cached_s": 0.01,
           "probe_per_context_s": 0.04, "probe_speedup": 4.0}  # fmt: skip
    body = igpo_probe_cost.report({"args": {"sft_steps": 300, "steps": 10, "hops": [2]}, "rows": [row]})
    assert "| 2 | 3.50 | 0.200 | 0.230 | 1.15x | 0.010 | 0.040 | 4.00x |" in body
    assert "300 SFT updates" in body and "10 alternating RL steps" in body


@pytest.mark.slow
def test_a_quick_run_times_both_methods_and_both_probes(capsys):
    pytest.importorskip("transformers")
    igpo_probe_cost.main(["--quick"])
    out = capsys.readouterr().out
    assert "1-hop: IGPO step" in out and "| 1 |" in out
