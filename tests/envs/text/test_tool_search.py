import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import palaestra  # noqa: F401
from palaestra.agents.text_baselines import OracleSearchPolicy, RandomTextPolicy
from palaestra.envs.text.protocol import CHARSET
from palaestra.envs.text.tool_search import ToolSearchEnv, ToolSearchInfos
from palaestra.envs.text.world import WorldConfig
from palaestra.evaluation import evaluate


def play(env, actions_fn, seed=None, options=None):
    obs, info = env.reset(seed=seed, options=options)
    transcript = [obs]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(actions_fn(obs, info))
        assert env.observation_space.contains(obs)
        transcript.append((obs, reward, terminated, truncated))
        done = terminated or truncated
    return transcript, info


@pytest.mark.parametrize("obs_mode", ["delta", "full"])
def test_check_env(obs_mode):
    env = gym.make("ToolSearch-v0", obs_mode=obs_mode, render_mode="ansi")
    check_env(env.unwrapped)


def test_spaces_use_printable_charset():
    env = ToolSearchEnv()
    assert set(env.action_space.character_set) == set(CHARSET)
    assert set(env.observation_space.character_set) == set(CHARSET)
    assert env.action_space.min_length == 0 and env.action_space.max_length == 2048


def test_oracle_episode_by_hand():
    env = ToolSearchEnv(request_infos=("answers", "gold_doc_ids", "oracle_action"), render_mode="ansi")
    obs, info = env.reset(seed=3, options={"hops": 2, "split": "dev"})
    question = env.lookup_question(info["question_id"])
    assert question.question in obs and question.split == "dev" and info["turn"] == 0
    for answer in question.answers:
        assert answer not in obs  # privileged facts never in observations
    assert info["answers"] == question.answers and info["gold_doc_ids"] == question.gold_doc_ids
    obs, reward, terminated, truncated, info = env.step(info["oracle_action"])
    assert obs.startswith("\n\n<information>Doc 1(Title: ") and reward == 0.0 and not terminated and not truncated
    assert info["action_type"] == "search" and info["valid"] and info["gold_doc_hit"] and info["tool_calls"] == 1
    assert question.gold_doc_ids[0] in info["retrieved_doc_ids"] and len(info["retrieved_doc_ids"]) == 3
    assert info["anchor"] == (question.id, tuple(sorted(info["retrieved_doc_ids"])))
    obs, reward, terminated, truncated, info = env.step(info["oracle_action"])
    obs, reward, terminated, truncated, info = env.step(info["oracle_action"])
    assert terminated and not truncated and reward == 1.0 and obs == ""
    assert info["em"] == 1.0 and info["f1"] == 1.0 and info["is_success"] and info["prediction"] == question.answers[0]
    assert "oracle_action" not in info
    assert env.render().count("<information>Doc 1") == 2
    with pytest.raises(ResetNeeded):
        env.step("<answer> again </answer>")


def test_no_privileged_info_by_default():
    env = ToolSearchEnv()
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step("<search> anything </search>")
    assert not {"answers", "gold_doc_ids", "oracle_action"} & set(info)
    with pytest.raises(ValueError, match="unknown info request"):
        ToolSearchEnv(request_infos=["secret"])
    assert ToolSearchInfos.coerce(["answers"]) == ToolSearchInfos(answers=True)


@pytest.mark.parametrize("obs_mode", ["delta", "full"])
def test_identical_transcripts_for_identical_seeds(obs_mode):
    def run(seed):
        env = gym.make("ToolSearch-v0", obs_mode=obs_mode)
        policy = RandomTextPolicy(env.action_space, seed=11)
        return [play(env, lambda obs, info: policy.predict(obs)[0], seed=seed if i == 0 else None)[0] for i in range(5)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_same_question_id_gives_same_episode_for_group_resets():
    envs = [ToolSearchEnv() for _ in range(4)]
    first = [env.reset(seed=i, options={"question_id": "q-02400"})[0] for i, env in enumerate(envs)]
    assert len(set(first)) == 1
    replies = {env.step("<search> foo </search>")[0] for env in envs}
    assert len(replies) == 1


def test_full_mode_observation_is_the_transcript():
    env = ToolSearchEnv(obs_mode="full", render_mode="ansi")
    obs0, _ = env.reset(seed=0)
    obs1, *_ = env.step("<think>hmm</think><search> x </search>")
    assert obs1.startswith(obs0) and "<think>hmm</think><search> x </search>" in obs1 and obs1 == env.render()


def test_truncation_at_turn_limit_and_invalid_turns():
    env = ToolSearchEnv(max_turns=3, invalid_action_penalty=0.1, step_cost=0.01)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("no tags at all")
    assert obs.startswith("\n\nInvalid action: the message has no <search> or <answer> block")
    assert reward == pytest.approx(-0.11) and info["reason"] == "no_tag" and not info["valid"] and info["tool_calls"] == 0
    obs, reward, terminated, truncated, info = env.step("<search> zzzzqqq </search>")
    assert obs == "\n\n<information>No results.</information>\n\n" and info["retrieved_doc_ids"] == ()
    assert reward == pytest.approx(-0.01)
    obs, reward, terminated, truncated, info = env.step("<search> again </search>")
    assert truncated and not terminated and info["prediction"] is None and info["em"] == 0.0 and not info["is_success"]


def test_reward_types():
    def final_reward(reward_type, answer_fn, search_first=False, invalid_first=False):
        env = ToolSearchEnv(reward_type=reward_type, request_infos=["answers", "oracle_action"])
        _, info = env.reset(seed=0, options={"question_id": "q-00000"})
        if invalid_first:
            env.step("oops")
        if search_first:
            _, _, _, _, info = env.step(info["oracle_action"])
        return env.step(f"<answer> {answer_fn(info)} </answer>")[1]

    assert final_reward("em", lambda i: i["answers"][0]) == 1.0
    assert final_reward("em", lambda i: i["answers"][0] + " extra") == 0.0
    assert final_reward("f1", lambda i: i["answers"][0] + " extra") == pytest.approx(0.8)
    assert final_reward("em_format", lambda i: i["answers"][0]) == 1.0
    assert final_reward("em_format", lambda i: i["answers"][0], invalid_first=True) == pytest.approx(0.8)
    assert final_reward("em_format", lambda i: "wrong") == pytest.approx(0.2)
    assert final_reward("em_format", lambda i: "wrong", search_first=True) == pytest.approx(0.3)
    assert final_reward("em_format", lambda i: "wrong", invalid_first=True) == pytest.approx(0.1)


@pytest.mark.parametrize(("split", "obs_mode"), [("dev", "delta"), ("hot", "delta"), ("dev", "full")])
def test_oracle_solves_and_random_fails(split, obs_mode):
    env = gym.make("ToolSearch-v0", split=split, obs_mode=obs_mode)
    oracle = evaluate(OracleSearchPolicy(env), env, n_episodes=150, seed=0)
    assert oracle.success_rate == 1.0 and oracle.mean == 1.0
    random = evaluate(RandomTextPolicy(env.action_space, seed=0), env, n_episodes=150, seed=0)
    assert random.success_rate <= 0.02


def test_reset_options_select_questions():
    env = ToolSearchEnv()
    for hops in (1, 2, 3):
        _, info = env.reset(seed=hops, options={"hops": hops, "split": "test"})
        assert info["hops"] == hops and info["split"] == "test"
    _, info = env.reset(options={"split": "hot"})
    assert info["split"] == "hot" and info["question_id"].startswith("hot-")
    obs, *_ = env.step("<search> " + env.lookup_question(info["question_id"]).oracle_queries[0] + " </search>")
    assert "hot-" not in obs  # ids stay out of the text, but the hot world's documents are searched
    _, info = env.reset(options={"question": {"question": "Who?", "answers": ["Nobody"]}})
    assert info["question_id"] == "custom"
    assert env.step("<answer> nobody </answer>")[1] == 1.0
    env = ToolSearchEnv(hops=[1, 3])
    assert {env.reset(seed=s)[1]["hops"] for s in range(20)} == {1, 3}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"question_id": "q-99999"}, "unknown question_id"),
        ({"split": "validation"}, "split must be one of"),
        ({"hops": 0}, "hops must be"),
        ({"hops": 7}, "no question"),
        ({"color": "red"}, "unknown reset option"),
        ({"question": {"question": "Who?"}}, "answers"),
        ({"question": "Who?"}, "options\\['question'\\]"),
    ],
)
def test_bad_reset_options(options, match):
    with pytest.raises(ValueError, match=match):
        ToolSearchEnv().reset(seed=0, options=options)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 0}, "top_k"),
        ({"max_turns": 0}, "max_turns"),
        ({"reward_type": "bleu"}, "reward_type"),
        ({"obs_mode": "chat"}, "obs_mode"),
        ({"step_cost": -1.0}, "step_cost"),
        ({"render_mode": "human"}, "render_mode"),
        ({"split": "val"}, "split"),
        ({"hops": "two"}, "hops"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ToolSearchEnv(**kwargs)
    with pytest.raises(TypeError, match="WorldConfig"):
        ToolSearchEnv(world={"seed": 1})


def test_envs_share_world_and_index():
    a, b = ToolSearchEnv(), ToolSearchEnv(top_k=5)
    assert a.world is b.world and a.index is b.index
    c = ToolSearchEnv(world=WorldConfig(seed=1, n_people=40, n_cities=8, n_countries=4, n_organisations=8, n_works=8,
                                        questions_per_hop=50))  # fmt: skip
    assert c.world is not a.world and len(c.world.documents) == 68


def test_step_before_reset_and_bad_actions():
    env = ToolSearchEnv()
    with pytest.raises(ResetNeeded):
        env.step("<search> x </search>")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="must be a str"):
        env.step(3)
    with pytest.raises(TypeError, match="must be a str"):
        env.step(np.array(["<search> x </search>"]))
    with pytest.raises(ValueError, match="charset"):
        env.step("<search> caf\u00e9 </search>")
    with pytest.raises(ValueError, match="at most 2048"):
        env.step("x" * 2049)
    _obs, *_ = env.step("<search> fine </search>")  # the rejected calls did not use a turn
    assert env.unwrapped._turn == 1


_ENV = ToolSearchEnv(obs_mode="full", max_turns=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(
        st.one_of(
            st.text(alphabet=CHARSET, max_size=200),
            st.builds(
                lambda t, c: f"<{t}>{c}</{t}>",
                st.sampled_from(["search", "answer", "think", "SEARCH"]),
                st.text(alphabet=CHARSET, max_size=40),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_step_never_raises_inside_action_space(messages):
    _ENV.reset(seed=0)
    for message in messages:
        assert _ENV.action_space.contains(message)
        obs, reward, terminated, truncated, info = _ENV.step(message)
        assert _ENV.observation_space.contains(obs)
        assert np.isfinite(reward) and info["action_type"] in ("search", "answer", "invalid")
        if terminated or truncated:
            break


@settings(max_examples=60, deadline=None)
@given(message=st.text(min_size=1, max_size=50).filter(lambda s: any(ch not in CHARSET for ch in s)))
def test_step_rejects_strings_outside_the_space(message):
    _ENV.reset(seed=0)
    with pytest.raises(ValueError, match="charset"):
        _ENV.step(message)


@settings(max_examples=30, deadline=None)
@given(value=st.one_of(st.integers(), st.floats(), st.none(), st.binary(), st.lists(st.text(max_size=3))))
def test_step_rejects_non_strings(value):
    _ENV.reset(seed=0)
    with pytest.raises(TypeError, match="must be a str"):
        _ENV.step(value)


def test_adhoc_question_must_fit_the_observation_space():
    env = ToolSearchEnv(max_content_length=20)
    with pytest.raises(ValueError, match="fit"):
        env.reset(options={"question": {"question": "x" * (env.max_question_length + 1), "answers": ["y"]}})


def test_vector_env_and_pickle():
    import pickle

    venv = gym.make_vec("ToolSearch-v0", num_envs=2, vectorization_mode="sync")
    obs, _ = venv.reset(seed=0)
    assert len(obs) == 2 and all(isinstance(o, str) for o in obs)
    _, rewards, terminated, _, _ = venv.step(["<search> a </search>", "<answer> b </answer>"])
    assert list(terminated) == [False, True] and list(rewards) == [0.0, 0.0]
    env = ToolSearchEnv()
    first = env.reset(seed=4)[0]
    assert pickle.loads(pickle.dumps(env)).reset(seed=4)[0] == first


def test_train_worlds_draw_training_questions_from_more_worlds_and_keep_dev_and_hot():
    env = ToolSearchEnv(train_worlds=3, hops=1, top_k=1, request_infos=("answers", "gold_doc_ids", "oracle_action"))
    prefixes = set()
    for seed in range(30):
        _, info = play(env, lambda obs, info: info["oracle_action"], seed=seed)
        assert info["em"] == 1.0  # every question is answerable by searching its own world's documents
        prefixes.add(info["question_id"].split("-")[0])
    assert prefixes == {"q", "w1", "w2"}
    _, info = env.reset(seed=0, options={"question_id": "w2-q-00010"})
    assert info["question_id"] == "w2-q-00010" and env._episode_world.name == "fictional(seed=2)"
    assert (
        env.lookup_question("w2-q-00010").question
        == ToolSearchEnv(world=WorldConfig(seed=2)).lookup_question("q-00010").question
    )
    for split, prefix in (("dev", "q"), ("hot", "hot")):
        _, info = env.reset(seed=1, options={"split": split})
        assert info["question_id"].startswith(f"{prefix}-")
    with pytest.raises(ValueError, match="unknown question_id"):
        env.reset(options={"question_id": "w3-q-00010"})  # world 3 is not among the 3 worlds


def test_train_worlds_errors():
    with pytest.raises(ValueError, match="train_worlds must be an integer >= 1"):
        ToolSearchEnv(train_worlds=0)
    with pytest.raises(ValueError, match="at most 1000"):
        ToolSearchEnv(train_worlds=5000)
