"""palaestra's offline data against the reference code's rules (D4RL, Minari), each rule transcribed here.

References (read at these commits):

* D4RL: github.com/Farama-Foundation/D4RL, commit 89141a689b0353b0dac3da5cba60da4b1b16254d, ``d4rl/__init__.py``
  (``qlearning_dataset``);
* Minari: github.com/Farama-Foundation/Minari, commit 1880118a0d5f67addd30a540316c11fdcb337014,
  ``minari/dataset/minari_dataset.py`` (``recover_environment``) and ``minari/utils.py``
  (``create_dataset_from_buffers``' ``requirements``).
"""

import importlib.metadata
import warnings

import gymnasium as gym
import h5py
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import palaestra  # noqa: F401  (registers the ids)
from palaestra.agents.offline.pgd import EnsembleWorldModel, trajectory_windows
from palaestra.envs.offline import from_d4rl_hdf5, qlearning_dataset
from palaestra.envs.offline.dataset import TERMINAL_NEXT_STATE_UNKNOWN_KEY, dataset_arrays
from palaestra.envs.offline.policies import FINGERPRINT_KEY, behaviour_fingerprint


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


# --- D4RL's qlearning_dataset on arrays without timeouts ------------------------------------------------
def d4rl_kept_rows(terminals, limit, terminate_on_end=False, timeouts=None):
    """The rows d4rl.qlearning_dataset returns, by D4RL's rule (transcribed, not copied).

    Rule: rows 0 .. N-2 are visited in order (the last row never has a successor). A counter of steps starts
    at 0. A row is "final" if ``timeouts`` says so or, without ``timeouts``, if the counter equals
    ``env._max_episode_steps - 1``. A final row is skipped (unless ``terminate_on_end``) and resets the counter
    to 0 without counting itself. Any other row is kept; if it is terminal (or final, with
    ``terminate_on_end``) the counter is set to 0; then the counter is incremented by one.
    """
    kept, counter = [], 0
    for row in range(len(terminals) - 1):
        final = bool(timeouts[row]) if timeouts is not None else counter == limit - 1
        if final and not terminate_on_end:
            counter = 0
            continue
        kept.append(row)
        counter = 0 if (terminals[row] or final) else counter
        counter += 1
    return kept


def _v0_arrays():
    """A D4RL -v0-style dictionary (no timeouts, no next states), limit 5: a cut episode (rows 0-4), a terminated
    one (5-7), a cut one (8-12) and a partial one (13-14); observations are row numbers."""
    n = 15
    terminals = np.zeros(n, bool)
    terminals[7] = True
    return {
        "observations": np.arange(n, dtype=np.float32)[:, None],
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": terminals,
    }


def test_without_timeouts_d4rl_compatible_follows_d4rls_time_limit_rule():
    data = _v0_arrays()
    expected = d4rl_kept_rows(data["terminals"], limit=5)
    assert expected == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 13]  # D4RL's count restarts at 1 after a terminal
    q = qlearning_dataset(data, d4rl_compatible=True, max_episode_steps=5)
    np.testing.assert_array_equal(q["rewards"], expected)  # rewards are row numbers
    np.testing.assert_array_equal(q["next_observations"][:, 0], np.array(expected) + 1)
    everything = qlearning_dataset(data, d4rl_compatible=True, terminate_on_end=True, max_episode_steps=5)
    np.testing.assert_array_equal(everything["rewards"], d4rl_kept_rows(data["terminals"], 5, terminate_on_end=True))


def test_without_timeouts_the_default_drops_every_episodes_time_limit_step():
    """The default counts each episode from 0, so the step cut by the limit (row 12) goes, not row 11."""
    q = qlearning_dataset(_v0_arrays(), max_episode_steps=5)
    np.testing.assert_array_equal(q["rewards"], [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13])
    assert q["terminals"].sum() == 1


def test_without_timeouts_the_limit_comes_from_the_env_as_in_d4rl():
    data = _v0_arrays()
    env = gym.make("Pendulum-v1", max_episode_steps=5)
    from_env = qlearning_dataset(env, dataset=data, d4rl_compatible=True)
    np.testing.assert_array_equal(from_env["rewards"], d4rl_kept_rows(data["terminals"], 5))


def test_without_timeouts_or_a_limit_qlearning_dataset_refuses():
    with pytest.raises(ValueError, match=r"no 'timeouts'.*max_episode_steps"):
        qlearning_dataset(_v0_arrays())
    with_next = {**_v0_arrays(), "next_observations": np.zeros((15, 1), np.float32)}
    assert len(qlearning_dataset(with_next)["rewards"]) == 15  # exact next states: no limit needed


def test_a_v0_pendulum_dataset_keeps_no_cross_episode_row():
    """Pendulum's episodes end only on the 200-step limit: D4RL's rule drops every cut step, palaestra too."""
    data = gym.make("pendulum-medium-v0", dataset_size=1000, progress=False).get_dataset()
    v0 = {key: data[key] for key in ("observations", "actions", "rewards", "terminals")}
    expected = d4rl_kept_rows(data["terminals"], limit=200)
    assert len(expected) == 1000 - 5  # 4 cut steps and the last row
    for d4rl_compatible in (False, True):
        q = qlearning_dataset(gym.make("Pendulum-v1"), dataset=v0, d4rl_compatible=d4rl_compatible)
        np.testing.assert_array_equal(q["observations"], data["observations"][expected])
        np.testing.assert_array_equal(q["next_observations"], data["next_observations"][expected])


# --- from_d4rl_hdf5: terminal rows have no next state ----------------------------------------------------
def _write_d4rl_file(path, n=300, terminal_at=(49, 149), next_observations=False):
    rng = np.random.default_rng(0)
    terminals = np.zeros(n, bool)
    terminals[list(terminal_at)] = True
    timeouts = np.zeros(n, bool)
    timeouts[-1] = True
    observations = rng.standard_normal((n, 3)).astype(np.float32)
    with h5py.File(path, "w") as file:
        file["observations"] = observations
        file["actions"] = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        file["rewards"] = rng.standard_normal(n).astype(np.float32)
        file["terminals"] = terminals
        file["timeouts"] = timeouts
        if next_observations:
            file["next_observations"] = np.concatenate([observations[1:], observations[:1]])
    return path


def test_imported_terminal_rows_are_marked_as_having_no_next_state(tmp_path):
    dataset = from_d4rl_hdf5(_write_d4rl_file(tmp_path / "f.hdf5"), "d4rl/pendulum/t-v0", "Pendulum-v1", 0.0, 1.0)
    assert dataset.storage.metadata[TERMINAL_NEXT_STATE_UNKNOWN_KEY] is True
    data = dataset_arrays(dataset)
    np.testing.assert_array_equal(data["has_next_observation"], ~data["terminals"])
    terminal = np.flatnonzero(data["terminals"])
    np.testing.assert_array_equal(data["next_observations"][terminal], data["observations"][terminal])  # the copy
    q = qlearning_dataset(dataset)
    np.testing.assert_array_equal(q["has_next_observation"], ~q["terminals"])
    with_next = from_d4rl_hdf5(
        _write_d4rl_file(tmp_path / "g.hdf5", next_observations=True), "d4rl/pendulum/u-v0", "Pendulum-v1", 0.0, 1.0
    )
    assert "has_next_observation" not in dataset_arrays(with_next)


def test_world_model_targets_leave_out_rows_without_a_next_state(tmp_path):
    data = dataset_arrays(from_d4rl_hdf5(_write_d4rl_file(tmp_path / "f.hdf5"), "d4rl/pendulum/t-v0", "Pendulum-v1", 0.0, 1.0))
    model = EnsembleWorldModel(3, 1, members=1, hidden_sizes=(8,))
    model.fit(data, steps=1, batch_size=4)
    real = data["has_next_observation"]
    deltas = data["next_observations"][real] - data["observations"][real]
    np.testing.assert_allclose(model.out_mean[:3].numpy(), deltas.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.out_mean[3].item(), data["rewards"][real].mean(), rtol=1e-5, atol=1e-6)


def test_diffusion_windows_never_hold_a_copied_next_state(tmp_path):
    """Windows are rows of states: a window ending on a terminal ends on the (real) terminal state."""
    path = _write_d4rl_file(tmp_path / "f.hdf5")
    data = dataset_arrays(from_d4rl_hdf5(path, "d4rl/pendulum/t-v0", "Pendulum-v1", 0.0, 1.0))
    with h5py.File(path, "r") as file:
        raw = {key: file[key][()] for key in file}
    bound = np.array([2.0], np.float32)
    imported = trajectory_windows(data, 8, 4, bound)
    np.testing.assert_array_equal(imported, trajectory_windows(raw, 8, 4, bound))
    assert imported[:, -1, -1].sum() == 2  # both terminal-ending windows are there


# --- Minari metadata ------------------------------------------------------------------------------------
def minari_requirement_warnings(requirements):
    """What Minari's recover_environment warns about, by its rule (transcribed): each requirement string must
    parse as a pip requirement, name an installed package, and its specifier must contain the installed version."""
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = Version(importlib.metadata.version(requirement.name))
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed")
            continue
        if not requirement.specifier.contains(installed):
            problems.append(f"{requirement.name} {installed} outside {requirement.specifier}")
    return problems


@pytest.mark.parametrize(
    ("env", "needs"), [("hopper-random-v0", {"gymnasium", "mujoco"}), ("pendulum-random-v0", {"gymnasium"})]
)
def test_minari_requirements_pin_the_packages_that_rebuild_the_env(env, needs):
    dataset = gym.make(env, dataset_size=60, progress=False).get_minari_dataset()
    requirements = dataset.storage.metadata["requirements"]
    assert {Requirement(text).name for text in requirements} == needs
    assert all(str(Requirement(text).specifier) for text in requirements)  # pinned, not bare names
    assert minari_requirement_warnings(requirements) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Minari warns on an unmet or malformed requirement
        dataset.recover_environment().close()


def test_regenerated_data_keep_the_v0_id_and_record_the_new_policies():
    """palaestra's documented departure from Minari's versioning: same id, fingerprint in the metadata."""
    env = gym.make("pendulum-medium-v0", dataset_size=120, progress=False)
    env.get_minari_dataset().storage.update_metadata({FINGERPRINT_KEY: "0" * 64})
    with pytest.warns(UserWarning, match="regenerating it"):
        dataset = env.get_minari_dataset()
    assert dataset.spec.dataset_id == env.get_wrapper_attr("dataset_id") and dataset.spec.dataset_id.endswith("-v0")
    assert dataset.storage.metadata[FINGERPRINT_KEY] == behaviour_fingerprint("pendulum", "medium")
