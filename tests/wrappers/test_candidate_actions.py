import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

import palaestra  # noqa: F401  (registers the ids)
from palaestra.envs.text.tool_search import ToolSearchEnv
from palaestra.wrappers import CandidateActions
from palaestra.wrappers.candidate_actions import hashed_bag_of_words


class MenuEnv(gym.Env):
    """A text env offering fixed candidates: "the blue sky" wins, anything else loses."""

    observation_space = gym.spaces.Text(200)
    action_space = gym.spaces.Text(200)

    def __init__(self, candidates=("red", "the blue sky", "green sky")):
        self.offered = list(candidates)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "look at the blue sky today. what colour is the sky?", {"candidates": self.offered}

    def step(self, action):
        return "done", float(action == "the blue sky"), True, False, {"candidates": []}


def tool_search(**kwargs):
    return gym.make("ToolSearch-v0", hops=1, top_k=1, request_infos=["candidates", "oracle_action"], **kwargs)


def test_a_candidate_index_sends_that_message_and_the_mask_marks_the_offered_ones():
    env = CandidateActions(MenuEnv(), max_candidates=4, features=16)
    observation, _ = env.reset(seed=0)
    assert env.action_space == gym.spaces.Discrete(4) and env.observation_space.contains(observation)
    assert env.action_masks().tolist() == [True, True, True, False]
    _, reward, terminated, _, info = env.step(1)
    assert (reward, terminated, info["message"]) == (1.0, True, "the blue sky")


def test_the_encoding_holds_the_bags_of_words_and_the_overlap_scores():
    env = CandidateActions(MenuEnv(), max_candidates=4, features=16)
    observation, _ = env.reset(seed=0)
    text = "look at the blue sky today. what colour is the sky?"
    np.testing.assert_allclose(observation[:16], hashed_bag_of_words(text, 16))
    assert observation[16] == 0.0  # no turn spent yet
    slots = observation[17:].reshape(4, 2 * 16 + 4)
    # the candidate's own words and their shapes (small letters only: "shape_l")
    np.testing.assert_allclose(slots[1, :16], hashed_bag_of_words("the blue sky shape_l shape_l shape_l", 16))
    # "the blue sky" occurs in the observation: its context is the words around it (five before, five after)
    np.testing.assert_allclose(slots[1, 16:32], hashed_bag_of_words("look at today what colour is the", 16))
    # its context against the first observation; all its words are there, it occurs in the latest one, not sent yet
    context_cosine = hashed_bag_of_words("look at today what colour is the", 16) @ hashed_bag_of_words(text, 16)
    np.testing.assert_allclose(slots[1, -4:], [context_cosine, 1.0, 1.0, 0.0], rtol=1e-6)
    assert context_cosine > 0.5
    np.testing.assert_allclose(slots[0, -3:], [0.0, 0.0, 0.0])  # "red" is nowhere
    np.testing.assert_allclose(slots[2, -3:], [0.5, 0.0, 0.0])  # "green sky": one word of two, not as a phrase
    assert not slots[3].any()  # an empty slot is zeros


def test_bag_of_words_is_stable_and_unit_norm():
    vector = hashed_bag_of_words("<search> Velmora Labs </search>", 32)
    assert np.isclose(np.linalg.norm(vector), 1.0)
    np.testing.assert_array_equal(vector, hashed_bag_of_words("<search> velmora labs </search>", 32))
    assert not hashed_bag_of_words("", 8).any()


def test_an_index_outside_the_mask_raises_or_is_an_invalid_turn():
    env = CandidateActions(MenuEnv(), max_candidates=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 3 is not one of the 3 candidates"):
        env.step(3)
    noop = CandidateActions(MenuEnv(), max_candidates=4, invalid_action="noop")
    noop.reset(seed=0)
    _, reward, _, _, info = noop.step(3)
    assert info["message"] == "" and reward == 0.0


def test_more_candidates_than_slots_are_cut_with_one_warning_or_refused():
    env = CandidateActions(MenuEnv(candidates=[f"say {i}" for i in range(5)]), max_candidates=3)
    with pytest.warns(UserWarning, match="offers 5 candidates; CandidateActions keeps the first max_candidates=3"):
        env.reset(seed=0)
    assert env.candidates == ["say 0", "say 1", "say 2"]
    strict = CandidateActions(MenuEnv(candidates=[f"say {i}" for i in range(5)]), max_candidates=3, on_overflow="error")
    with pytest.raises(ValueError, match="offers 5 candidates, more than max_candidates=3"):
        strict.reset(seed=0)


def test_bad_wrapping_is_a_clear_error():
    with pytest.raises(TypeError, match="Text observations and actions"):
        CandidateActions(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="max_candidates must be an integer >= 1"):
        CandidateActions(MenuEnv(), max_candidates=0)
    with pytest.raises(ValueError, match="invalid_action must be"):
        CandidateActions(MenuEnv(), invalid_action="skip")
    unrequested = CandidateActions(gym.make("ToolSearch-v0", hops=1))
    with pytest.raises(KeyError, match=r"request_infos=\['candidates'\]"):
        unrequested.reset(seed=0)


def test_tool_search_candidates_hold_the_oracles_searches_and_never_read_the_gold_answer():
    env = tool_search()
    searched = 0
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert all(c.startswith("<search>") for c in info["candidates"])  # nothing to answer before a search
        while True:
            if info["oracle_action"].startswith("<search>"):
                assert info["oracle_action"] in info["candidates"]
                searched += 1
            _, _, terminated, truncated, info = env.step(info["oracle_action"])
            if terminated or truncated:
                break
    assert searched >= 30
    # The same question with another gold answer offers the same candidates at every turn.
    inner = ToolSearchEnv(hops=1, top_k=1, request_infos=["candidates", "oracle_action"])
    _, info = inner.reset(seed=3)
    question = inner.lookup_question(info["question_id"])
    lists = []
    for answers in (question.answers, ("something else",)):
        _, info = inner.reset(options={"question": {"question": question.question, "answers": list(answers)}})
        _, _, _, _, after = inner.step(f"<search> {question.oracle_queries[0]} </search>")
        lists.append((info["candidates"], after["candidates"]))
    assert lists[0] == lists[1]
    assert f"<answer> {question.answers[0]} </answer>" in lists[0][1]  # a 1-hop answer is in the retrieved document


def test_wrapped_tool_search_and_textworld_pass_sb3s_checker():
    check_env(CandidateActions(tool_search(), invalid_action="noop"))
    pytest.importorskip("textworld")
    textworld = gym.make("TextWorld-v0", request_infos=["admissible_commands"])
    check_env(CandidateActions(textworld, invalid_action="noop"))
