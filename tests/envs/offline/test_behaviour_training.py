"""The retraining script of the shipped behaviour policies: outputs, selection rule and resumption."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from palaestra.envs.offline.policies import load_actor

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "train_behaviour_policies.py"


@pytest.mark.slow
def test_train_behaviour_policies_writes_resumable_results(tmp_path):
    common = ["--env", "Pendulum-v1", "--eval-every", "200", "--eval-episodes", "1", "--learning-starts", "100"]
    common += ["--buffer-size", "1000", "--out", str(tmp_path)]
    subprocess.run([sys.executable, str(SCRIPT), "--steps", "600", *common], check=True, capture_output=True)
    subprocess.run([sys.executable, str(SCRIPT), "--steps", "800", "--resume", *common], check=True, capture_output=True)
    manifest = json.loads((tmp_path / "pendulum_manifest.json").read_text())
    assert manifest["total_steps"] == 800 and len(manifest["commands"]) == 2
    assert [step for step, _ in manifest["eval_curve"]] == [200, 400, 600, 800]
    assert manifest["medium"]["step"] > 100  # never the untrained actor
    actor = load_actor(tmp_path / "pendulum_expert.npz")
    assert actor(np.zeros(3, dtype=np.float32), None, deterministic=True).shape == (1,)
    with np.load(tmp_path / "pendulum_medium_replay.npz") as replay:
        lengths = replay["episode_lengths"]
        assert len(replay["actions"]) == lengths.sum() and len(replay["observations"]) == lengths.sum() + len(lengths)
        assert np.all(np.abs(replay["actions"]) <= 2.0)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_expert_run_carries_across_sittings_and_medium_run_stops_at_its_target(tmp_path):
    common = ["--env", "Pendulum-v1", "--eval-every", "200", "--eval-episodes", "1", "--learning-starts", "100"]
    common += ["--buffer-size", "1000"]
    expert = [*common, "--level", "expert", "--carry", str(tmp_path / "carry.pt"), "--out", str(tmp_path / "expert")]
    subprocess.run([sys.executable, str(SCRIPT), "--steps", "400", *expert], check=True, capture_output=True)
    first = torch.load(tmp_path / "carry.pt", weights_only=False)
    assert first["num_timesteps"] == 400 and not (tmp_path / "expert" / "state").exists()
    resumed = [sys.executable, str(SCRIPT), "--steps", "800", "--refill", "100", *expert]
    subprocess.run(resumed, check=True, capture_output=True)
    manifest = json.loads((tmp_path / "expert" / "pendulum_expert_manifest.json").read_text())
    assert manifest["total_steps"] == 800 and len(manifest["commands"]) == 2 and "medium" not in manifest
    assert [step for step, _ in manifest["eval_curve"]] == [200, 400, 600, 800]
    assert manifest["commands"][0].startswith("scripts/train_behaviour_policies.py --steps 400 --env Pendulum-v1")
    carried = torch.load(tmp_path / "carry.pt", weights_only=False)
    assert sum("actor" in snapshot for snapshot in carried["state"]["snapshots"]) == 1  # only the best keeps weights
    assert not torch.equal(carried["policy"]["actor.mu.weight"], first["policy"]["actor.mu.weight"])  # it trained on

    medium = [*common, "--level", "medium", "--stop-at-return=-1e9", "--out", str(tmp_path / "medium"), "--eval-every", "300"]
    subprocess.run([sys.executable, str(SCRIPT), "--steps", "800", *medium], check=True, capture_output=True)
    medium_manifest = json.loads((tmp_path / "medium" / "pendulum_medium_manifest.json").read_text())
    assert medium_manifest["total_steps"] == 300  # stopped at the first evaluation, which reached the target
    assert medium_manifest["medium"]["step"] == 300 and "expert" not in medium_manifest
    with np.load(tmp_path / "medium" / "pendulum_medium_replay.npz") as replay:
        assert replay["episode_lengths"].tolist() == [200]  # whole episodes only

    ship = _load_script("ship_behaviour_policies")
    runs = ship.read_runs([tmp_path / "expert", tmp_path / "medium"])
    entry = ship.merged_entry("pendulum", runs["pendulum"])
    assert entry["expert"] == manifest["expert"] and entry["medium"] == medium_manifest["medium"]
    assert entry["medium_run"]["total_steps"] == 300 and entry["medium_replay_transitions"] == 200
    with pytest.raises(SystemExit, match="both its expert and its medium"):
        ship.merged_entry("pendulum", {"expert": runs["pendulum"]["expert"]})


def test_medium_run_needs_a_target_and_carry_is_for_expert_runs():
    for extra, message in ((["--level", "medium"], "needs --stop-at-return"), (["--carry", "x.pt"], "expert runs only")):
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--env", "Pendulum-v1", "--steps", "10", "--out", "unused", *extra],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and message in result.stderr


def test_medium_run_keeps_the_trained_snapshot_closest_to_its_target():
    script = _load_script("train_behaviour_policies")
    curve = [(5_000, 990.0), (20_000, 300.0), (150_000, 680.0), (160_000, 1688.0)]  # jumps past the target 983
    snapshots = [{"step": step, "return": value} for step, value in curve]
    assert script.medium_run_snapshot(snapshots, 983.0, learning_starts=10_000)["step"] == 150_000
    smooth = [*snapshots[:2], {"step": 30_000, "return": 1000.0}]
    assert script.medium_run_snapshot(smooth, 983.0, learning_starts=10_000)["step"] == 30_000
