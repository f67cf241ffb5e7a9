"""palaestra's offline datasets: generation, D4RL arrays, ids, scores, bad input and the collect command."""

import json

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra  # noqa: F401  (registers the ids)
from palaestra.cli import main
from palaestra.envs.offline import (
    KINDS,
    TASKS,
    dataset_id,
    from_d4rl_hdf5,
    generate_dataset,
    offline_env_id,
    parse_offline_env_id,
    qlearning_dataset,
)
from palaestra.envs.offline.generation import write_minari_dataset
from palaestra.envs.offline.policies import (
    FINGERPRINT_KEY,
    behaviour_fingerprint,
    behaviour_manifest,
    load_behaviour_policy,
)


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _make(kind, size=400, seed=0, **kwargs):
    return gym.make(f"pendulum-{kind}-v0", dataset_size=size, dataset_seed=seed, progress=False, **kwargs)


def test_every_task_and_kind_has_an_id():
    ids = {offline_env_id(task, kind) for task in TASKS for kind in KINDS}
    assert {"hopper-medium-v0", "halfcheetah-medium-replay-v0", "walker2d-medium-expert-v0", "pendulum-random-v0"} <= ids
    assert ids <= set(gym.registry)
    assert parse_offline_env_id("walker2d-medium-replay-v0") == ("walker2d", "medium-replay")


def test_dataset_ids_separate_canonical_and_custom_data():
    assert dataset_id("hopper", "medium") == "palaestra/hopper/medium-v0"
    assert dataset_id("hopper", "medium", size=1_000_000, seed=0) == "palaestra/hopper/medium-v0"
    assert dataset_id("hopper", "medium", size=1000) == "palaestra/hopper/medium-n1000-s0-v0"
    assert dataset_id("hopper", "medium-expert") == "palaestra/hopper/medium-expert-v0"


@pytest.mark.parametrize("kind", KINDS)
def test_get_dataset_schema_and_dtypes(kind):
    env = _make(kind)
    data = env.get_dataset()
    assert set(data) == {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}
    n = len(data["rewards"])
    assert n == 400
    assert data["observations"].shape == data["next_observations"].shape == (n, 3)
    assert data["actions"].shape == (n, 1)
    assert data["observations"].dtype == data["actions"].dtype == data["rewards"].dtype == np.float32
    assert data["terminals"].dtype == data["timeouts"].dtype == bool
    assert not data["terminals"].any()  # Pendulum never terminates: every episode end is a time-out
    assert data["timeouts"][-1]  # the size cut is a truncation
    assert np.all(np.abs(data["actions"]) <= 2.0)
    # within an episode the next observation is the following row's observation
    inside = ~data["timeouts"][:-1]
    np.testing.assert_array_equal(data["next_observations"][:-1][inside], data["observations"][1:][inside])


def test_episodes_follow_the_time_limit_and_metadata_is_recorded(minari_root):
    env = _make("expert")
    data = env.get_dataset()
    assert np.flatnonzero(data["timeouts"]).tolist() == [199, 399]
    dataset = minari.load_dataset(env.unwrapped.spec.id if False else env.dataset_id)
    metadata = dataset.storage.metadata
    assert metadata["ref_min_score"] == TASKS["pendulum"].ref_min_score
    assert metadata["ref_max_score"] == TASKS["pendulum"].ref_max_score
    assert metadata["author"] and "not D4RL" in metadata["description"]
    assert dataset.recover_environment().spec.id == "Pendulum-v1"
    assert (minari_root / "palaestra" / "pendulum" / "expert-n400-s0-v0" / "data").is_dir()


def test_generation_is_deterministic_for_a_seed():
    first = generate_dataset("pendulum", "medium", size=1200, seed=3, progress=False)
    a = qlearning_dataset(first)
    second = generate_dataset("pendulum", "medium", size=1200, seed=3, overwrite=True, progress=False)
    b = qlearning_dataset(second)
    for key in a:
        np.testing.assert_array_equal(a[key][:1000], b[key][:1000])
    other = qlearning_dataset(generate_dataset("pendulum", "medium", size=1200, seed=4, progress=False))
    assert not np.array_equal(a["actions"][:1000], other["actions"][:1000])


def test_behaviour_levels_are_ordered():
    rewards = {kind: _make(kind, size=1000).get_dataset()["rewards"].mean() for kind in ("random", "medium", "expert")}
    assert rewards["random"] < rewards["medium"] < rewards["expert"]


def test_medium_expert_is_medium_followed_by_expert():
    both = _make("medium-expert", size=800).get_dataset()
    medium = _make("medium", size=400).get_dataset()
    expert = _make("expert", size=400).get_dataset()
    for key in both:
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]))


def test_medium_replay_is_the_recorded_buffer():
    data = _make("medium-replay", size=None).get_dataset()
    manifest = behaviour_manifest()["pendulum"]
    assert len(data["rewards"]) == manifest["medium_replay_transitions"]
    # the buffer starts with the uniform-random warm-up steps of SAC, far worse than the expert
    assert data["rewards"][:1000].mean() < _make("expert", size=1000).get_dataset()["rewards"].mean()


def test_qlearning_dataset_matches_get_dataset():
    env = _make("medium", size=500)
    data = env.get_dataset()
    q = qlearning_dataset(env)
    assert set(q) == {"observations", "actions", "next_observations", "rewards", "terminals"}
    for key in q:
        np.testing.assert_array_equal(q[key], data[key])
    # D4RL's rule: drop the last step of each time-limited episode and the final row
    d4rl = qlearning_dataset(data, d4rl_compatible=True)
    assert len(d4rl["rewards"]) == 500 - int(data["timeouts"].sum())
    keep = ~data["timeouts"]
    np.testing.assert_array_equal(d4rl["next_observations"], data["next_observations"][keep])
    assert len(qlearning_dataset(data, d4rl_compatible=True, terminate_on_end=True)["rewards"]) == 499


def test_timeouts_are_not_terminals_on_a_terminating_env(tmp_path):
    """Hopper falls (termination) and is cut by the size (truncation): the two flags stay apart."""
    data = gym.make("hopper-random-v0", dataset_size=300, progress=False).get_dataset()
    assert data["terminals"].any() and data["timeouts"][-1]
    assert not (data["terminals"] & data["timeouts"]).any()
    q = qlearning_dataset(data)
    np.testing.assert_array_equal(q["terminals"], data["terminals"])


def test_normalized_score_of_the_references_is_0_and_1():
    env = _make("medium")
    task = TASKS["pendulum"]
    assert env.get_normalized_score(task.ref_min_score) == pytest.approx(0.0)
    assert env.get_normalized_score(task.ref_max_score) == pytest.approx(1.0)
    np.testing.assert_allclose(env.get_normalized_score(np.array([task.ref_min_score, task.ref_max_score])), [0.0, 1.0])
    hopper = gym.make("hopper-medium-v0")
    assert hopper.get_normalized_score(3234.3) == pytest.approx(1.0)
    assert hopper.get_normalized_score(-20.272305) == pytest.approx(0.0)


def test_offline_env_passes_the_gymnasium_checker():
    env = _make("medium")
    check_env(env.unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)


def test_shipped_policies_have_a_manifest():
    manifest = behaviour_manifest()["pendulum"]
    assert {"commands", "seed", "total_steps", "expert", "medium"} <= manifest.keys()
    assert manifest["expert"]["return"] > manifest["medium"]["return"] > manifest["random_return"]
    policy = load_behaviour_policy("pendulum", "expert")
    action = policy(np.zeros(3, dtype=np.float32), None, deterministic=True)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0


# --- bad input ----------------------------------------------------------------------------------------
def test_unknown_kind_and_task_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset kind 'mediocre'"):
        generate_dataset("pendulum", "mediocre", size=10)
    with pytest.raises(ValueError, match="unknown offline task 'ant'"):
        dataset_id("ant", "medium")
    with pytest.raises(ValueError, match="not an offline env id"):
        parse_offline_env_id("pendulum-best-v0")
    with pytest.raises(ValueError, match="unknown dataset source"):
        _make("medium", source="d4rl")


def test_failed_generation_leaves_nothing_behind(minari_root, monkeypatch):
    from minari.dataset._storages import get_minari_storage

    storage_class = get_minari_storage("hdf5")
    write_episodes = storage_class.update_episodes

    def write_then_fail(self, episodes):
        write_episodes(self, episodes)  # the data file is on disk when the failure strikes
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage_class, "update_episodes", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset("pendulum", "random", size=300, progress=False)
    assert not (minari_root / "palaestra" / "pendulum" / "random-n300-s0-v0").exists()
    assert not [p for p in minari_root.iterdir() if p.name.startswith(".palaestra-tmp-")]


def test_unwritable_dataset_path_is_reported(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker / "datasets"))
    with pytest.raises(OSError, match="cannot write datasets to"):
        generate_dataset("pendulum", "random", size=10, progress=False)


def test_missing_dataset_with_generation_disabled_names_the_command(monkeypatch):
    monkeypatch.setenv("PALAESTRA_OFFLINE_GENERATE", "0")
    env = _make("expert", size=123)
    with pytest.raises(FileNotFoundError, match="palaestra collect --env pendulum-expert-v0 --size 123"):
        env.get_dataset()


def _mark_as_generated_by_other_policies(env):
    env.get_minari_dataset().storage.update_metadata({FINGERPRINT_KEY: "0" * 64})


def test_data_of_other_behaviour_policies_are_regenerated():
    env = _make("medium", size=300)
    first = env.get_dataset()
    _mark_as_generated_by_other_policies(env)
    with pytest.warns(UserWarning, match="other behaviour policies than the installed ones"):
        again = env.get_dataset()
    np.testing.assert_array_equal(again["observations"], first["observations"])
    recorded = env.get_minari_dataset().storage.metadata[FINGERPRINT_KEY]
    assert recorded == behaviour_fingerprint("pendulum", "medium") != behaviour_fingerprint("pendulum", "expert")


def test_data_of_other_behaviour_policies_with_generation_disabled_name_the_command(monkeypatch):
    env = _make("expert", size=200)
    env.get_dataset()
    _mark_as_generated_by_other_policies(env)
    monkeypatch.setenv("PALAESTRA_OFFLINE_GENERATE", "0")
    stale = _make("expert", size=200)
    with pytest.raises(RuntimeError, match="palaestra collect --env pendulum-expert-v0 --size 200 --overwrite"):
        stale.get_dataset()


def test_dataset_whose_spaces_do_not_match_the_env(minari_root):
    # write a Hopper-shaped dataset under pendulum's id
    hopper_like = gym.make("hopper-random-v0", dataset_size=50, progress=False).get_minari_dataset()
    buffers = list(hopper_like.iterate_episodes())
    from minari.data_collector import EpisodeBuffer

    episodes = [
        EpisodeBuffer(
            id=e.id,
            observations=e.observations,
            actions=e.actions,
            rewards=e.rewards,
            terminations=e.terminations,
            truncations=e.truncations,
            infos={},
        )
        for e in buffers
    ]
    write_minari_dataset(dataset_id("pendulum", "medium", 50), episodes, "Hopper-v5", 0.0, 1.0, "wrong", "test")
    with pytest.raises(ValueError, match="observation space"):
        _make("medium", size=50).get_dataset()


# --- real data: Minari's own datasets and D4RL files ---------------------------------------------------
def test_source_minari_uses_a_local_minari_dataset():
    with pytest.raises(FileNotFoundError, match="minari download mujoco/hopper/medium-v0"):
        gym.make("hopper-medium-v0", source="minari").get_dataset()
    random_like = gym.make("hopper-random-v0", dataset_size=60, progress=False).get_minari_dataset()
    from minari.data_collector import EpisodeBuffer

    episodes = [
        EpisodeBuffer(
            id=e.id,
            observations=e.observations,
            actions=e.actions,
            rewards=e.rewards,
            terminations=e.terminations,
            truncations=e.truncations,
            infos={},
        )
        for e in random_like.iterate_episodes()
    ]
    write_minari_dataset("mujoco/hopper/medium-v0", episodes, "Hopper-v5", -1.0, 3.0, "stand-in", "test")
    env = gym.make("hopper-medium-v0", source="minari")
    assert len(env.get_dataset()["rewards"]) == 60
    assert env.get_normalized_score(3.0) == pytest.approx(1.0)  # the dataset's own references
    with pytest.raises(ValueError, match="no 'pendulum'"):
        gym.make("pendulum-medium-v0", source="minari")


def _write_d4rl_file(path, n=450, timeouts=True, terminal_at=()):
    rng = np.random.default_rng(0)
    terminals = np.zeros(n, dtype=bool)
    terminals[list(terminal_at)] = True
    with h5py.File(path, "w") as file:
        file["observations"] = rng.standard_normal((n, 3)).astype(np.float32)
        file["actions"] = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        file["rewards"] = rng.standard_normal(n).astype(np.float32)
        file["terminals"] = terminals
        if timeouts:
            flags = np.zeros(n, dtype=bool)
            flags[199::200] = True
            file["timeouts"] = flags
    return path


def test_from_d4rl_hdf5_round_trips_the_transitions(tmp_path):
    path = _write_d4rl_file(tmp_path / "pendulum.hdf5")
    dataset = from_d4rl_hdf5(path, "d4rl/pendulum/test-v0", "Pendulum-v1", ref_min_score=-1000.0, ref_max_score=0.0)
    with h5py.File(path, "r") as file:
        raw = {key: file[key][()] for key in file}
    ours = qlearning_dataset(dataset)
    d4rl = qlearning_dataset(raw, d4rl_compatible=True)  # what d4rl.qlearning_dataset returns for this file
    for key in d4rl:
        np.testing.assert_array_equal(ours[key], d4rl[key])
    assert dataset.storage.metadata["ref_min_score"] == -1000.0


def test_from_d4rl_hdf5_without_timeouts_splits_on_the_time_limit(tmp_path):
    path = _write_d4rl_file(tmp_path / "v0.hdf5", n=420, timeouts=False, terminal_at=(49,))
    data = qlearning_dataset(from_d4rl_hdf5(path, "d4rl/pendulum/v0-v0", "Pendulum-v1", 0.0, 1.0))
    assert data["terminals"].sum() == 1


def test_from_d4rl_hdf5_rejects_bad_files(tmp_path, minari_root):
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(_write_d4rl_file(tmp_path / "good.hdf5").read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        from_d4rl_hdf5(truncated, "d4rl/pendulum/bad-v0", "Pendulum-v1")
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        from_d4rl_hdf5(garbage, "d4rl/pendulum/bad-v0", "Pendulum-v1")
    with pytest.raises(ValueError, match="but Hopper-v5 has"):
        from_d4rl_hdf5(tmp_path / "good.hdf5", "d4rl/hopper/bad-v0", "Hopper-v5")
    with h5py.File(tmp_path / "nokeys.hdf5", "w") as file:
        file["observations"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="lacks"):
        from_d4rl_hdf5(tmp_path / "nokeys.hdf5", "d4rl/pendulum/bad-v0", "Pendulum-v1")
    assert not (minari_root / "d4rl").exists() or not any((minari_root / "d4rl").rglob("metadata.json"))


# --- the collect command -------------------------------------------------------------------------------
def test_collect_command(minari_root, capsys):
    assert main(["collect", "--env", "pendulum-random-v0", "pendulum-expert-v0", "--size", "250", "--no-progress-bar"]) == 0
    assert "palaestra/pendulum/expert-n250-s0-v0 (250 steps" in capsys.readouterr().out
    metadata = json.loads((minari_root / "palaestra/pendulum/random-n250-s0-v0/data/metadata.json").read_text())
    assert metadata["total_steps"] == 250
    assert main(["collect", "--env", "pendulum-expert-v0", "--size", "250"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["collect", "--env", "pendulum-best-v0"]) == 2
    assert main(["collect", "--env", "pendulum-expert-v0", "--size", "0"]) == 2


def test_episode_bounds_split_at_flags_and_keep_a_cut_last_episode():
    from palaestra.envs.offline import episode_bounds

    starts, ends = episode_bounds(np.array([False, True, False, False, True, False]))
    assert starts.tolist() == [0, 2, 5] and ends.tolist() == [1, 4, 5]
    starts, ends = episode_bounds(np.array([False, False]))  # no flag: one cut episode
    assert starts.tolist() == [0] and ends.tolist() == [1]
    with pytest.raises(ValueError, match="no transitions"):
        episode_bounds(np.array([], dtype=bool))


def test_episode_returns_sum_each_episodes_rewards_in_float64():
    from palaestra.envs.offline import episode_returns

    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
    returns = episode_returns(rewards, np.array([False, True, False, True, False]))
    assert returns.dtype == np.float64 and returns.tolist() == [3.0, 7.0, 5.0]  # the cut last episode counts
    with pytest.raises(ValueError, match="rewards has 5 rows but episode_ends has 2"):
        episode_returns(rewards, np.array([False, True]))
