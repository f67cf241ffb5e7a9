"""Lesson 7: tool agents on ToolSearch-v0: the search protocol, answer scoring, reward design and the hot world."""

# ruff: noqa: E402  (the imports follow require(), which names a missing extra in one line)

# %% [markdown]
# # Lesson 7 — Tool agents: answering questions with a search engine
#
# A *tool agent* acts by writing text that calls a tool, and observes what the tool returns. Search-R1
# (Jin et al., 2025, arXiv:2503.09516) trains language models to interleave reasoning with calls to a search
# engine; IGPO, GiGPO and ReSeek follow the same protocol. This lesson works with `ToolSearch-v0`, an offline
# version of that task over a *fictional* world, so no pretrained model can know the answers:
#
# 1. play the environment by hand: its `Text` spaces and its `<search>` / `<answer>` messages;
# 2. score answers with exact match and token F1 (the SQuAD metrics);
# 3. design rewards: the env's reward options and what they pay for;
# 4. write a small search policy, and see why the **hot** world exists: it separates agents that *search* from
#    agents that *remember*.

# %%
from palaestra.course import budget, require

require("bm25s")

import re
import string
from collections import Counter

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import palaestra
from palaestra.agents.text_baselines import OracleSearchPolicy, RandomTextPolicy
from palaestra.course.checks.lesson07 import check_answer_metrics, check_episode_return, check_search_policy
from palaestra.envs.text.rewards import exact_match, token_f1
from palaestra.envs.text.search import index_for

N_EPISODES = budget(100, 30)  # evaluation episodes per policy and split

# %% [markdown]
# ## 1. The environment by hand
#
# Observations and actions are strings: both spaces are `gymnasium.spaces.Text` (printable ASCII). An episode
# starts with instructions and a question. Each message the agent sends is one **turn** and holds exactly one
# `<search> query </search>` (the env answers with the top BM25 documents inside `<information>`) or one
# `<answer> text </answer>` (the episode ends). `<think>` blocks are ignored; anything else is an *invalid turn*
# that gets a corrective message and still uses up one of the `max_turns` turns.

# %%
env = gym.make("ToolSearch-v0", render_mode="ansi", request_infos=["answers"])
print("observation space:", env.observation_space)
print("action space:     ", env.action_space)
observation, info = env.reset(seed=3, options={"split": "dev", "hops": 1})
print(observation)

# %% [markdown]
# The question names an entity; we search for it, read the document, and answer. `info["answers"]` holds the
# gold answers only because we asked for it with `request_infos` (ground truth never appears in an observation).

# %%
question = observation.splitlines()[-1].removeprefix("Question: ")
entity = re.search(r"(?:of|does|was|is|founded|wrote) ((?:[A-Z]\w* ?)+)", question).group(1).strip()
observation, reward, terminated, truncated, info = env.step(f"<think>look it up</think><search> {entity} </search>")
print(observation[:400], "...")
observation, reward, terminated, truncated, info = env.step("no tags at all")
print(observation)
observation, reward, terminated, truncated, info = env.step(f"<answer> {info['answers'][0]} </answer>")
print(f"reward {reward}, terminated {terminated}, em {info['em']}, f1 {info['f1']}, tool calls {info['tool_calls']}")

# %% [markdown]
# `render()` (with `render_mode="ansi"`) returns the whole transcript: prompt, messages and replies. The
# **oracle** (`OracleSearchPolicy`) reads the gold search queries from the env's question table and plays the
# ideal episode; here it is on a 2-hop question, where the first search reveals the entity to search next.

# %%
oracle_env = gym.make("ToolSearch-v0", render_mode="ansi", max_doc_chars=150)
oracle = OracleSearchPolicy(oracle_env)
observation, info = oracle_env.reset(seed=1, options={"split": "dev", "hops": 2})
done = False
while not done:
    message, _ = oracle.predict(observation)
    observation, reward, terminated, truncated, info = oracle_env.step(message)
    done = terminated or truncated
print(oracle_env.render())
print("reward:", reward)

# %% [markdown]
# ## 2. Scoring an answer: exact match and token F1
#
# Both metrics compare *normalised* strings (SQuAD's rule, used by Search-R1 and HotpotQA): lower-case, delete
# ASCII punctuation, drop the articles *a*, *an*, *the*, collapse whitespace. With several gold aliases, the best
# score counts.
#
# * **Exact match**: $\mathrm{EM} = 1$ if the normalised prediction equals a normalised gold answer, else 0.
# * **Token F1**: with $c$ the number of tokens the prediction and the answer share (as multisets), precision
#   $P = c/|\text{pred}|$, recall $R = c/|\text{gold}|$ and $F_1 = 2PR/(P+R)$ ($0$ when $c = 0$). As in HotpotQA's
#   script, if either side is *yes*, *no* or *noanswer* and they differ, the score is 0.
#
# **Exercise 1.** Write `normalize`, `my_exact_match` and `my_token_f1` (`collections.Counter` helps with the
# multiset intersection, `&`). The check compares them with the env's own scoring on a set of cases.


# %%
def normalize(text: str) -> str:
    """SQuAD normalisation: lower-case, no punctuation, no articles, single spaces."""
    # BEGIN SOLUTION
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())
    # STUB
    # return text  # your code: lower-case, drop punctuation and articles, collapse spaces
    # END SOLUTION


def my_exact_match(prediction: str, answers: list[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0."""
    # BEGIN SOLUTION
    return float(any(normalize(prediction) == normalize(gold) for gold in answers))
    # STUB
    # return None  # your code
    # END SOLUTION


def my_token_f1(prediction: str, answers: list[str]) -> float:
    """The best token F1 of the prediction against the gold answers."""
    # BEGIN SOLUTION
    best = 0.0
    guess = normalize(prediction)
    for gold in map(normalize, answers):
        if (guess in ("yes", "no", "noanswer") or gold in ("yes", "no", "noanswer")) and guess != gold:
            continue
        shared = sum((Counter(guess.split()) & Counter(gold.split())).values())
        if shared:
            precision, recall = shared / len(guess.split()), shared / len(gold.split())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
    # STUB
    # return None  # your code
    # END SOLUTION


ok = check_answer_metrics(my_exact_match, my_token_f1)
em_fn, f1_fn = (my_exact_match, my_token_f1) if ok else (exact_match, token_f1)
for guess in ("Punoukaem Labs", "the punoukaem labs!", "Punoukaem", "Labs of Punoukaem Labs"):
    print(f"{guess!r:28}  EM {em_fn(guess, ['Punoukaem Labs']):.0f}  F1 {f1_fn(guess, ['Punoukaem Labs']):.3f}")

# %% [markdown]
# F1 gives partial credit: a half-right name earns something, where EM gives 0. That makes F1 a denser
# reward, and also a gameable one: long answers that contain the gold words keep high recall.
#
# ## 3. Reward design
#
# The env pays its reward on the last step, and can subtract costs on every step:
#
# | option | what it pays |
# |---|---|
# | `reward_type="em"` (default) | EM of the answer: 1 or 0 |
# | `reward_type="f1"` | token F1 of the answer, in $[0, 1]$ |
# | `reward_type="em_format"` | Search-R1's format-aware EM (below) |
# | `step_cost` $c$ | $-c$ on every turn: a price per tool call |
# | `invalid_action_penalty` $p$ | $-p$ on each invalid turn |
#
# The format-aware reward pays 1 for a right answer in a well-formed episode ($1 - 0.2$ if some turn was
# invalid); for a wrong answer it pays $0.2$ if every turn was well formed ($0.3$ if a retrieved document held
# the answer), $0.1$ if some turn was invalid but the agent answered, else 0.
#
# So the return of an episode of $T$ turns with $n$ invalid ones is $R = r_{\text{outcome}} - cT - pn$. A step
# cost teaches the agent not to search when it already knows; too large a cost teaches it to answer blindly.
# Format rewards make early learning easier (a well-formed miss earns something) but can be farmed.
#
# **Exercise 2.** Below is an episode: one invalid message, one search, and a half-right answer. Compute by
# hand (with your F1) its return under `reward_type="f1"`, `step_cost=0.05`, `invalid_action_penalty=0.1`. The
# check replays the episode in the env with those settings.

# %%
settings = {"reward_type": "f1", "step_cost": 0.05, "invalid_action_penalty": 0.1}
episode_env = gym.make("ToolSearch-v0", request_infos=["answers"], **settings)
_, info = episode_env.reset(seed=3, options={"split": "dev", "hops": 1})
gold = info["answers"]
first_word = gold[0].split()[0]
messages = ["I think I will search now", f"<search> {entity} </search>", f"<answer> {first_word} </answer>"]
print(messages, "gold:", gold)

# BEGIN SOLUTION
episode_return = f1_fn(first_word, list(gold)) - 0.05 * len(messages) - 0.1 * 1
# STUB
# episode_return = None  # your code: the outcome reward minus the step costs and the invalid-turn penalty
# END SOLUTION
check_episode_return(episode_return, messages, seed=3, options={"split": "dev", "hops": 1}, **settings)

# %% [markdown]
# The same three kinds of episode under each reward type, replayed in the env: a good episode (search then the
# right answer), a malformed miss (an invalid turn, then a wrong answer), and a well-formed miss that did
# retrieve the answer's document.


# %%
def episode_return_under(messages: list[str], **kwargs: object) -> float:
    """Replay ``messages`` on the seed-3 dev question and sum the rewards."""
    replay = gym.make("ToolSearch-v0", **kwargs)
    replay.reset(seed=3, options={"split": "dev", "hops": 1})
    total = 0.0
    for message in messages:
        _, reward, terminated, truncated, _ = replay.step(message)
        total += reward
        if terminated or truncated:
            break
    return total


episodes = {
    "search, right answer": [f"<search> {entity} </search>", f"<answer> {gold[0]} </answer>"],
    "invalid, wrong answer": ["hello", "<answer> Port Elsby </answer>"],
    "search, wrong answer": [f"<search> {entity} </search>", "<answer> Port Elsby </answer>"],
}
print(" " * 18, "".join(f"{name:>24}" for name in episodes))
for name, kwargs in {
    "em": {},
    "f1": {"reward_type": "f1"},
    "em_format": {"reward_type": "em_format"},
    "em, step_cost 0.1": {"step_cost": 0.1},
}.items():
    print(f"{name:18}", "".join(f"{episode_return_under(msgs, **kwargs):24.2f}" for msgs in episodes.values()))

# %% [markdown]
# ## 4. A search policy, and the hot world
#
# A policy for 1-hop questions: search the entity the question names, then read the answer out of the entity's
# document. How do we know how this world writes its facts? We *learn* it from the training split: for every
# training question we know the entity and the answer, so we find the sentence of the entity's document that
# holds the answer and keep it as a pattern (entity $\to$ `{s}`, answer $\to$ `{o}`), one set of patterns per
# question template (entity $\to$ `{x}`). What this learns is a *reading skill* (how facts are phrased), not
# facts.

# %%
world = env.unwrapped.world
titles = {document.title: document for document in world.documents}
reader: dict[str, set[str]] = {}
for q in world.questions:
    if q.split == "train" and q.hops == 1:
        name, answer = q.oracle_queries[0], q.answers[0]
        for sentence in re.split(r"(?<=\.) ", titles[name].text):
            if name in sentence and answer in sentence:
                pattern = sentence.replace(name, "{s}").replace(answer, "{o}")
                reader.setdefault(q.question.replace(name, "{x}"), set()).add(pattern)
print(f"{len(reader)} question templates, {sum(map(len, reader.values()))} sentence patterns; e.g.")
for template in list(reader)[:2]:
    print(" ", template, "->", sorted(reader[template]))


def parse_question(question: str) -> tuple[str, str] | None:
    """The template and the entity of a question, or None if no learned template fits."""
    for template in reader:
        match = re.fullmatch(re.escape(template).replace(r"\{x\}", "(.+)"), question)
        if match:
            return template, match.group(1)
    return None


def read_answer(template: str, entity: str, text: str) -> str | None:
    """The answer the document ``text`` states for ``template`` about ``entity``, or None."""
    for pattern in reader[template]:
        regex = re.escape(pattern).replace(r"\{s\}", re.escape(entity)).replace(r"\{o\}", r"([A-Z0-9][^.]*)")
        match = re.search(regex, text)
        if match:
            return match.group(1)
    return None


def documents(observation: str) -> list[tuple[str, str]]:
    """The (title, text) pairs of an ``<information>`` block."""
    return re.findall(r"Doc \d+\(Title: (.*?)\) (.*)", observation)


# %% [markdown]
# **Exercise 3.** Write the policy's `step(observation, memory)`. On the first observation (it holds a line
# `Question: ...`), parse the question, remember the template and entity in `memory`, and search the entity.
# On the next observation (the search results), read the answer from the document titled with the entity (or
# the first document) and send it. If anything fails, answer something anyway: an episode must end. The check
# plays 20 dev questions with your policy and wants an exact-match rate of at least 0.8 and a search in every
# episode.


# %%
def step(observation: str, memory: dict) -> str:
    """One message of the search-then-read policy; ``memory`` persists over an episode's turns."""
    # BEGIN SOLUTION
    last_line = observation.strip().splitlines()[-1] if observation.strip() else ""
    if last_line.startswith("Question: "):
        parsed = parse_question(last_line.removeprefix("Question: "))
        memory["parsed"] = parsed
        return f"<search> {parsed[1]} </search>" if parsed else "<answer> unknown </answer>"
    template, name = memory["parsed"]
    docs = documents(observation)
    text = next((body for title, body in docs if title == name), docs[0][1] if docs else "")
    return f"<answer> {read_answer(template, name, text) or 'unknown'} </answer>"
    # STUB
    # return "<answer> unknown </answer>"  # your code: search the entity first, then answer from its document
    # END SOLUTION


class StepPolicy:
    """Wrap a ``step(observation, memory)`` function as a policy with SB3's ``predict`` signature."""

    def __init__(self, step_fn):
        self.step_fn, self.memory = step_fn, {}

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        if "Question: " in observation:
            self.memory = {}  # a new episode
        return self.step_fn(observation, self.memory), state


check_search_policy(StepPolicy(step))
search_policy = StepPolicy(step)


# %% [markdown]
# (If your `step` is not ready yet, the lesson goes on with it anyway; its scores below will be low.)
#
# Now a **closed-book** policy: the same reading skill, but instead of calling the tool it looks the entity up
# in its own *memory*, a private copy of the training world's documents. It stands for a model that memorised
# its training corpus in its weights. On `dev` questions (same world, unseen questions) memory is as good as
# search. The `hot` split asks questions about a *second* world, built from another seed with the same
# vocabulary and templates, that no training data names: there, memory is of no use and only searching works.


# %%
memory_index = index_for(world)


def closed_book_step(observation: str, memory: dict) -> str:
    """Answer at once from the memorised training world, without calling the search tool."""
    parsed = parse_question(observation.split("Question: ")[-1].strip()) if "Question: " in observation else None
    if parsed is None:
        return "<answer> unknown </answer>"
    template, name = parsed
    hits = memory_index.search(name, 3)
    remembered = [world.documents[hit.row] for hit in hits]
    text = next((d.text for d in remembered if d.title == name), remembered[0].text if remembered else "")
    answer = read_answer(template, name, text)
    return f"<answer> {answer if answer else 'unknown'} </answer>"


results: dict[str, dict[str, float]] = {}
for split in ("dev", "hot"):
    split_env = gym.make("ToolSearch-v0", split=split, hops=1)
    policies = {
        "random": RandomTextPolicy(split_env.action_space, seed=0),
        "closed book": StepPolicy(closed_book_step),
        "search then read": search_policy,
        "oracle": OracleSearchPolicy(split_env),
    }
    for name, policy in policies.items():
        evaluation = palaestra.evaluate(policy, split_env, n_episodes=N_EPISODES, seed=0)
        results.setdefault(name, {})[split] = float(np.mean(evaluation.successes))
for name, scores in results.items():
    print(f"{name:17} dev EM {scores['dev']:.2f}   hot EM {scores['hot']:.2f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
x = np.arange(len(results))
for offset, split in ((-0.2, "dev"), (0.2, "hot")):
    ax.bar(x + offset, [scores[split] for scores in results.values()], width=0.4, label=split)
ax.set_xticks(x, list(results))
ax.set_ylabel("exact match")
ax.set_ylim(0, 1.05)
ax.set_title(f"1-hop ToolSearch-v0, {N_EPISODES} questions per split")
ax.legend()
plt.show()

# %% [markdown]
# Read the plot: the closed-book policy scores like the search policy on `dev` and falls to (almost) nothing on
# `hot`, while the search policy keeps its score in the new world. A dev score alone cannot tell the two apart;
# the hot world can. This is why trained agents are evaluated on `hot` too: an RL-trained language model can
# raise its dev EM by memorising facts of the training world in its weights, and only a world it has never seen
# shows whether it learned to search.
#
# **Question.** Suppose you train with `step_cost=0.3`. What would a reward-maximising agent do on 1-hop
# questions, and how would its `hot` EM compare with its `dev` EM?
#
# BEGIN SOLUTION
# A search costs 0.3 and a right answer pays 1, so searching still pays when it makes the answer right. But
# an agent that has memorised training-world facts earns $1 - 0.3$ by answering at once instead of
# $1 - 0.6$ after a search, so the cost pushes it to skip the tool wherever its memory is good enough: dev EM
# can stay high while hot EM collapses, because in the hot world memory is worthless. A large tool cost
# rewards memorisation over search.
# END SOLUTION
#
# **Further reading.** Search-R1 (arXiv:2503.09516) for the protocol and the format reward; ReSeek
# (arXiv:2510.00568) for fictional worlds as a test of search over memory; SQuAD (Rajpurkar et al., 2016) and
# HotpotQA (Yang et al., 2018) for EM and F1.
