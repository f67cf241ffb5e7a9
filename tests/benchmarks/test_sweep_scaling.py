import pytest

from benchmarks import sweep_scaling


def test_overhead_and_speedups_come_from_the_arms_wall_times():
    rounds = [
        {"arm": "sequential", "wall_seconds": 60.0, "ray_start_seconds": 0.0, "train_seconds": [9.0] * 6},
        {"arm": "ray-1cpu", "wall_seconds": 90.0, "ray_start_seconds": 6.0, "train_seconds": [9.0] * 6},
        {"arm": "ray-2cpu", "wall_seconds": 50.0, "ray_start_seconds": 4.0, "train_seconds": [12.0] * 6},
        {"arm": "sequential", "wall_seconds": 64.0, "ray_start_seconds": 0.0, "train_seconds": [9.0] * 6},
        {"arm": "ray-1cpu", "wall_seconds": 94.0, "ray_start_seconds": 6.0, "train_seconds": [9.0] * 6},
        {"arm": "ray-2cpu", "wall_seconds": 54.0, "ray_start_seconds": 4.0, "train_seconds": [12.0] * 6},
    ]
    summary = sweep_scaling.summarize(rounds)
    assert summary["wall_seconds"] == {"sequential": 62.0, "ray-1cpu": 92.0, "ray-2cpu": 52.0}
    assert summary["ray_overhead_per_trial_seconds"] == pytest.approx(30.0 / 6)
    assert summary["speedup_2cpu_vs_sequential"] == pytest.approx(62.0 / 52.0)
    assert summary["speedup_2cpu_vs_1cpu"] == pytest.approx(92.0 / 52.0)
    assert summary["ray_start_seconds"] == pytest.approx(5.0)
    assert summary["train_seconds_summed"]["ray-2cpu"] == pytest.approx(72.0)
