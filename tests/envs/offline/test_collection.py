"""D4RL-style datasets for any env: `palaestra collect --env ENV_ID --kind KIND` and gym.make("Offline-v0", ...)."""

import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import palaestra  # noqa: F401  (registers the ids)
from palaestra.cli import main
from palaestra.envs.offline import KINDS, qlearning_dataset
from palaestra.envs.offline.behaviour_training import BehaviourRun, TrainingSettings, train_expert, train_medium
from palaestra.envs.offline.collection import BehaviourStore, collect_dataset, collected_dataset_id, dataset_name

TINY = TrainingSettings(steps=300, eval_every=100, eval_episodes=1)
# 300 steps train no expert worth the name (DQN does not even start learning): the collection warns, rightly
pytestmark = pytest.mark.filterwarnings("ignore:the expert of .* no more than a random policy:UserWarning")


class PointEnv(gym.Env):
    """A point on a line that should move to x = 1: reward -|x - 1|, 25 steps (Box or Discrete actions)."""

    def __init__(self, discrete: bool = False):
        self.observation_space = gym.spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.discrete = discrete

    def _observation(self):
        return np.array([self.x, 1.0 - self.x], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1.0, 0.0))
        return self._observation(), {}

    def step(self, action):
        move = (int(action) - 1) * 0.2 if self.discrete else float(np.asarray(action).reshape(-1)[0]) * 0.2
        self.x = float(np.clip(self.x + move, -4.0, 4.0))
        return self._observation(), -abs(self.x - 1.0), False, False, {}


class ImageEnv(PointEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)


class DictEnv(PointEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float32)})


for _name, _cls, _kwargs in (
    ("PointBox-v0", "PointEnv", {}),
    ("PointDiscrete-v0", "PointEnv", {"discrete": True}),
    ("PointImage-v0", "ImageEnv", {}),
    ("PointDict-v0", "DictEnv", {}),
):
    if _name not in gym.registry:
        gym.register(_name, entry_point=f"{__name__}:{_cls}", kwargs=_kwargs, max_episode_steps=25)


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _collect(env_id, kind, size=120, seed=0, **kwargs):
    return collect_dataset(env_id, kind, size=size, seed=seed, settings=TINY, reference_episodes=2, progress=False, **kwargs)


def _offline(env_id, kind, size=120, seed=0):
    return gym.make("Offline-v0", env_id=env_id, kind=kind, dataset_size=size, dataset_seed=seed)


@pytest.mark.parametrize("env_id", ["PointBox-v0", "PointDiscrete-v0"])
def test_every_kind_with_the_d4rl_api(env_id):
    for kind in KINDS:
        size = None if kind == "medium-replay" else 120
        dataset = _collect(env_id, kind, size=size)
        assert dataset.spec.dataset_id == collected_dataset_id(env_id, kind, size=size)
        env = _offline(env_id, kind, size=size)
        arrays = env.get_dataset()
        n = len(arrays["rewards"])
        assert n == (120 if kind != "medium-replay" else n) and n > 0
        assert {key: len(value) for key, value in arrays.items()} == dict.fromkeys(arrays, n)
        assert all(env.action_space.contains(a if arrays["actions"].ndim > 1 else int(a)) for a in arrays["actions"])
        assert arrays["timeouts"].sum() >= 1 and not arrays["terminals"].any()  # 25-step episodes, never terminated
        transitions = qlearning_dataset(env)
        assert len(transitions["observations"]) == n
        # the references: random and expert returns, the same for every kind of the env
        manifest = BehaviourStore(env_id).manifest
        assert env.get_normalized_score(manifest["random_return"]) == pytest.approx(0.0)
        assert env.get_normalized_score(manifest["expert"]["reference_return"]) == pytest.approx(1.0)
    manifest = BehaviourStore(env_id).manifest
    assert manifest["expert"]["source"] == manifest["medium"]["source"] == "trained"
    assert manifest["expert"]["algorithm"] == ("dqn" if "Discrete" in env_id else "sac")
    assert manifest["medium"]["step"] <= manifest["medium"]["run_steps"]
    assert arrays["actions"].dtype == (np.int64 if "Discrete" in env_id else np.float32)


def test_medium_expert_is_medium_then_expert_of_the_same_seed():
    medium, expert = _collect("PointBox-v0", "medium", size=60), _collect("PointBox-v0", "expert", size=60)
    both = _collect("PointBox-v0", "medium-expert", size=120)
    actions = np.concatenate([e.actions for e in both.iterate_episodes()])
    expected = np.concatenate([e.actions for d in (medium, expert) for e in d.iterate_episodes()])
    np.testing.assert_array_equal(actions, expected)


def test_a_seed_gives_the_same_data_and_another_seed_other_data():
    first = _offline_arrays("medium", seed=3)
    _collect("PointBox-v0", "medium", seed=3, overwrite=True)
    again = _offline_arrays("medium", seed=3)
    other = _offline_arrays("medium", seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["actions"], other["actions"])


def _offline_arrays(kind, seed):
    try:
        _collect("PointBox-v0", kind, seed=seed)
    except FileExistsError:
        pass
    return _offline("PointBox-v0", kind, seed=seed).get_dataset()


def test_the_medium_run_stops_at_the_first_evaluation_reaching_its_target(minari_root):
    reached = train_medium(minari_root / "a", "PointBox-v0", TINY, target=-np.inf)
    assert [step for step, _ in reached["curve"]] == [100] and reached["snapshots"]["closest"]["step"] == 100
    missed = train_medium(minari_root / "b", "PointBox-v0", TINY, target=np.inf)
    assert [step for step, _ in missed["curve"]] == [100, 200, 300] and missed["steps"] == 300
    curve = dict(map(tuple, missed["curve"]))
    assert missed["snapshots"]["closest"]["return"] == max(curve.values())  # closest to +inf: the highest


def test_an_interrupted_expert_run_resumes_from_its_last_evaluation(minari_root, monkeypatch):
    checkpoint = BehaviourRun.checkpoint

    def checkpoint_then_interrupt(self, model, state):
        checkpoint(self, model, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(BehaviourRun, "checkpoint", checkpoint_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_expert(minari_root / "run", "PointBox-v0", TINY)
    assert json.loads((minari_root / "run" / "state.json").read_text())["curve"][0][0] == 100
    monkeypatch.setattr(BehaviourRun, "checkpoint", checkpoint)
    state = train_expert(minari_root / "run", "PointBox-v0", TINY)
    assert [step for step, _ in state["curve"]] == [100, 200, 300] and state["finished"]
    assert state["snapshots"]["best"]["return"] == max(r for _, r in state["curve"])


def test_a_given_expert_policy_sets_the_references_and_is_kept(tmp_path):
    model = PPO("MlpPolicy", "PointBox-v0", n_steps=64, batch_size=32, seed=0).learn(64)
    model.save(tmp_path / "expert.zip")
    assert main(["collect", "--env", "PointBox-v0", "--kind", "expert", "--policy", str(tmp_path / "expert.zip"),
                 "--algo", "ppo", "--size", "100", "--reference-episodes", "2", "--no-progress-bar"]) == 0  # fmt: skip
    manifest = BehaviourStore("PointBox-v0").manifest
    assert manifest["expert"]["source"] == "given" and manifest["expert"]["class"].endswith(":PPO")
    assert "palaestra collect --env PointBox-v0 --kind expert" in manifest["commands"][0]
    other = PPO("MlpPolicy", "PointBox-v0", n_steps=64, batch_size=32, seed=1)
    other.save(tmp_path / "other.zip")
    with pytest.raises(FileExistsError, match="already has an expert"):
        collect_dataset("PointBox-v0", "expert", size=50, policy=(other, tmp_path / "other.zip"), progress=False)


def test_offline_agents_train_on_a_collected_mountaincar_dataset(tmp_path, capsys):
    common = ["--size", "400", "--train-steps", "400", "--eval-every", "200", "--eval-episodes", "1"]
    assert main(["collect", "--env", "MountainCarContinuous-v0", "--kind", "medium", *common,
                 "--reference-episodes", "1", "--no-progress-bar"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    evaluations = [line for line in lines if line.startswith("  step ")]  # both runs report each evaluation
    assert evaluations[0].startswith("  step 200/400: mean return") and "target" in evaluations[-1]
    line = lines[-1]
    assert line.startswith("wrote local/mountaincarcontinuous-v0/medium-n400-s0-v0 (400 steps")
    assert "gym.make('Offline-v0', env_id='MountainCarContinuous-v0', kind='medium', dataset_size=400)" in line
    out = tmp_path / "td3bc"
    kwargs = ["env_id=MountainCarContinuous-v0", "kind=medium", "dataset_size=400"]
    assert main(["train", "--algo", "td3bc", "--env", "Offline-v0", "--env-kwargs", *kwargs, "--timesteps", "50",
                 "--out", str(out), "--no-progress-bar"]) == 0  # fmt: skip
    assert main(["eval", "--checkpoint", str(out), "--episodes", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["env_kwargs"]["env_id"] == "MountainCarContinuous-v0" and "normalized_score" in result


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "NoSuchEnv-v0", "--kind", "medium"], "cannot make env 'NoSuchEnv-v0'"),
        (["--env", "PointImage-v0", "--kind", "random"], "observes Box of shape (8, 8, 3)"),
        (["--env", "PointDict-v0", "--kind", "random"], "observes Dict; palaestra collects datasets for flat Box"),
        (["--env", "ToolSearch-v0", "--kind", "random"], "observes Text"),
        (["--env", "PointBox-v0", "--kind", "medium-replay", "--policy", "x.zip"], "not of 'medium-replay'"),
        (["--env", "PointBox-v0", "--kind", "expert", "--policy", "missing.zip", "--algo", "sac"], "does not exist"),
        (["--env", "PointBox-v0", "PointDiscrete-v0", "--kind", "random"], "one env at a time"),
        (["--env", "PointBox-v0"], "pass --kind"),
        (["--env", "hopper-medium-v0", "--kind", "medium"], "drop --kind"),
        (["--env", "PointBox-v0", "--kind", "random", "--train-steps", "0"], "--train-steps must be >= 1"),
        (["--env", "PointBox-v0", "--kind", "random", "--namespace", "a b"], "namespace must be"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(argv, message, minari_root, capsys):
    assert main(["collect", *argv, "--no-progress-bar"]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not minari_root.exists() or not any(p.name != ".palaestra-behaviour" for p in minari_root.iterdir())


def test_a_policy_whose_spaces_do_not_match_the_env_is_refused(tmp_path, minari_root, capsys):
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32).save(tmp_path / "cartpole.zip")
    argv = ["collect", "--env", "PointBox-v0", "--kind", "expert", "--policy", str(tmp_path / "cartpole.zip"), "--algo", "ppo"]
    assert main(argv) == 2
    assert "the policy's observation space is Box" in capsys.readouterr().err
    assert not (minari_root / "local").exists()


def test_a_failed_collection_leaves_no_dataset(minari_root, monkeypatch):
    import palaestra.envs.offline.collection as collection

    def fail(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(collection, "rollout_episodes", fail)
    with pytest.raises(RuntimeError, match="simulated"):
        collect_dataset("PointBox-v0", "random", size=50, settings=TINY, reference_episodes=1, progress=False)
    assert not (minari_root / "local").exists()


def test_offline_v0_without_its_kwargs_or_a_dataset_names_what_is_missing():
    with pytest.raises(ValueError, match="needs the env and the dataset kind"):
        gym.make("Offline-v0")
    with pytest.raises(ValueError, match="unknown dataset kind"):
        gym.make("Offline-v0", env_id="PointBox-v0", kind="mediocre")
    env = gym.make("Offline-v0", env_id="PointBox-v0", kind="medium")
    with pytest.raises(FileNotFoundError, match="run `palaestra collect --env PointBox-v0 --kind medium`"):
        env.get_dataset()


def test_dataset_names_and_ids():
    assert dataset_name("MountainCarContinuous-v0") == "mountaincarcontinuous-v0"
    assert dataset_name("my_pkg:My/Env-v1") == "my-env-v1"
    assert collected_dataset_id("CartPole-v1", "medium") == "local/cartpole-v1/medium-v0"
    assert collected_dataset_id("CartPole-v1", "medium-expert", "lab", 500, 2) == "lab/cartpole-v1/medium-expert-n500-s2-v0"


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "hyperparams"), [("PointBox-v0", {}), ("PointDiscrete-v0", {"learning_starts": 200})])
def test_trained_behaviour_policies_order_random_medium_expert(env_id, hyperparams):
    """With a real budget the expert beats random clearly and the medium policy lands between them."""
    settings = TrainingSettings(steps=3000, eval_every=250, eval_episodes=3, hyperparams=hyperparams)
    collect_dataset(env_id, "medium", size=100, settings=settings, reference_episodes=10, progress=False)
    manifest = BehaviourStore(env_id).manifest
    random_return, expert_return = manifest["random_return"], manifest["expert"]["reference_return"]
    assert expert_return > random_return + 0.5 * abs(random_return)
    target = manifest["medium"]["target"]
    assert target == pytest.approx(random_return + (expert_return - random_return) / 3)
    assert random_return < manifest["medium"]["eval_return"] < expert_return
