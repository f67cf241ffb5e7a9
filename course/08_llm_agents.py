"""Lesson 8: RL for language-model agents: GRPO's group advantages, the clipped surrogate, GiGPO's credit."""

# ruff: noqa: E402  (the imports follow require(), which names a missing extra in one line)

# %% [markdown]
# # Lesson 8 — RL for language-model agents: GRPO and GiGPO
#
# A language-model agent is a policy over **tokens**: each message it sends to ToolSearch-v0 (lesson 7) is a
# sequence of sampled tokens, and an episode is one long token sequence — prompt, action, observation, action,
# ... The loss only touches the *action* tokens (a mask is 1 on them and 0 on prompt and retrieved text), so no
# gradient teaches the model to predict the documents.
#
# Training such agents at scale uses **critic-free** policy gradients: no value network, but a *group* of $G$
# rollouts of the same question whose rewards serve as each other's baseline. This lesson:
#
# 1. computes GRPO's group-normalised advantages by hand (Shao et al., 2024, DeepSeekMath, arXiv:2402.03300);
# 2. writes the PPO clipped surrogate for one token (Schulman et al., 2017, arXiv:1707.06347);
# 3. computes GiGPO's step-level advantages on a hand-made group (Feng et al., 2025, arXiv:2505.10978), which
#    give credit to individual turns through *anchor states*;
# 4. trains a tiny language model with GRPO and GiGPO from one supervised warm start and compares them.

# %%
from palaestra.course import budget, require

require("transformers", "bm25s")

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch as th

from palaestra.agents.llm.advantages import gigpo_advantages, grpo_advantages
from palaestra.agents.llm.losses import clipped_surrogate_loss
from palaestra.agents.llm.trainer import GRPO, GiGPO
from palaestra.course.checks.lesson08 import (
    check_clipped_surrogate,
    check_gigpo_step_advantages,
    check_grpo_advantages,
)

th.set_num_threads(1)
SFT_STEPS = budget(600, 10)  # supervised warm-start updates
SFT_EPISODES = budget(1024, 32)  # oracle episodes for the warm start
RL_UPDATES = budget(20, 2)  # RL updates per method
N_PROMPTS = budget(2, 1)  # questions per RL update
EVAL_QUESTIONS = budget(32, 6)  # questions per split in evaluation

# %% [markdown]
# ## 1. GRPO: the group is the baseline
#
# For one question, sample $G$ episodes and observe their outcome rewards $R_1, \dots, R_G$ (here EM: 1 or 0).
# GRPO gives every action token of episode $i$ the same advantage
#
# $$A_i = \frac{R_i - \operatorname{mean}(R)}{\operatorname{std}(R) + \epsilon},$$
#
# with the unbiased standard deviation (as `torch.std`, $G - 1$ in the denominator) and $\epsilon = 10^{-6}$.
# Episodes better than their siblings are pushed up, worse ones down; no critic is needed.
#
# **Exercise 1.** Compute the advantages of the group below with NumPy.

# %%
rewards = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
# BEGIN SOLUTION
advantages = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
# STUB
# advantages = None  # your code: (R - mean) / (std + eps), with the unbiased std
# END SOLUTION
ok = check_grpo_advantages(advantages, rewards)
advantages = advantages if ok else grpo_advantages(th.tensor(rewards)).numpy()
print("advantages:", np.round(advantages, 3))
print("an all-fail group:", grpo_advantages(th.zeros(8)).numpy())

# %% [markdown]
# The last line is GRPO's weak spot: a group in which every rollout fails (or every one succeeds) has zero
# variance, so every advantage is 0 and the group teaches nothing (*advantage collapse*). On hard multi-turn
# tasks many groups look like that, which is what turn-level methods such as GiGPO and IGPO try to fix.
#
# ## 2. The clipped surrogate, one token at a time
#
# After sampling, the trainer may take several gradient steps on the same data. With the probability ratio
# $\rho = \pi_\theta(y_t \mid \text{context}) / \pi_{\text{old}}(y_t \mid \text{context})$ of a token, PPO
# (and GRPO) minimise
#
# $$\ell(\rho, A) = -\min\big(\rho A,\; \operatorname{clip}(\rho, 1 - \varepsilon, 1 + \varepsilon)\, A\big),$$
#
# averaged over action tokens. The clip removes the incentive to move $\rho$ beyond $1 \pm \varepsilon$ in the
# direction the advantage favours, and the $\min$ keeps the pessimistic value, so a token that has already
# moved too far in the wrong direction still gets its full gradient.
#
# **Exercise 2.** Write `token_loss(ratio, advantage, clip_range)` for one token (plain floats).


# %%
def token_loss(ratio: float, advantage: float, clip_range: float = 0.2) -> float:
    """PPO's clipped-surrogate loss of one token."""
    # BEGIN SOLUTION
    clipped_ratio = min(max(ratio, 1.0 - clip_range), 1.0 + clip_range)
    return -min(ratio * advantage, clipped_ratio * advantage)
    # STUB
    # return None  # your code: minus the smaller of rho * A and clip(rho, 1 - eps, 1 + eps) * A
    # END SOLUTION


ok = check_clipped_surrogate(token_loss)


def library_token_loss(ratio: float, advantage: float, clip_range: float = 0.2) -> float:
    """The trainer's loss on a one-token batch."""
    log_ratio = th.tensor([[float(np.log(ratio))]])
    loss, _ = clipped_surrogate_loss(log_ratio, th.tensor([[advantage]]), th.ones(1, 1), clip_range=clip_range)
    return float(loss)


loss_fn = token_loss if ok else library_token_loss
ratios = np.linspace(0.3, 1.8, 151)
fig, ax = plt.subplots(figsize=(6, 3.5))
for advantage in (1.0, -1.0):
    ax.plot(ratios, [-loss_fn(r, advantage) for r in ratios], label=f"A = {advantage:+.0f}")
ax.axvspan(0.8, 1.2, color="grey", alpha=0.15, label="trust region, eps = 0.2")
ax.set_xlabel("probability ratio rho")
ax.set_ylabel("surrogate objective (minus the loss)")
ax.set_title("PPO's clipped surrogate for one token")
ax.legend()
plt.show()

# %% [markdown]
# Where a curve is flat the gradient is zero: with $A > 0$ nothing is gained beyond $\rho = 1.2$, with $A < 0$
# nothing below $\rho = 0.8$.
#
# ## 3. GiGPO: credit for single steps through anchor states
#
# GRPO's advantage is one number for a whole episode: a good first search followed by a wrong answer is
# punished as a whole. GiGPO adds a **step-level** advantage. Its observation: rollouts of one question often
# pass through the *same* environment state — here, the same set of retrieved documents (the env reports it as
# `info["anchor"]`). All steps taken from one such *anchor state* $s$ form a step group $G^S(s)$; their
# discounted returns $R^S_{i,t} = \sum_{k \ge t} \gamma^{k-t} r_{i,k}$ are compared with each other:
#
# $$A^S_{i,t} = \frac{R^S_{i,t} - \operatorname{mean}_{G^S(s)} R^S}{\operatorname{std}_{G^S(s)} R^S + \epsilon},
# \qquad A_{i,t} = A^E_i + \omega A^S_{i,t},$$
#
# where $A^E_i$ is GRPO's episode advantage, a step group of one gets $A^S = 0$, and $\omega = 1$, $\gamma = 0.95$.
#
# Four hand-made rollouts of one question (rewards at the answer step; `dA` is the gold document, `dB` a
# distractor):
#
# | rollout | turn 0 | turn 1 | turn 2 | EM |
# |---|---|---|---|---|
# | 0 | search A (state `{}`) | right answer (state `{dA}`) | | 1 |
# | 1 | search A (state `{}`) | wrong answer (state `{dA}`) | | 0 |
# | 2 | search B (state `{}`) | search A (state `{dB}`) | right answer (state `{dA, dB}`) | 1 |
# | 3 | search B (state `{}`) | wrong answer (state `{dB}`) | | 0 |

# %%
step_rewards = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
turn_mask = np.array([[True, True, False], [True, True, False], [True, True, True], [True, True, False]])
anchors = [
    [(), ("dA",)],
    [(), ("dA",)],
    [(), ("dB",), ("dA", "dB")],
    [(), ("dB",)],
]
gamma = 0.95

# %% [markdown]
# **Exercise 3.** Compute the step advantages $A^S$, an array of shape $(4, 3)$ with 0 on the padded steps.
# First the discounted returns of every step, then one normalisation per anchor group.

# %%
# BEGIN SOLUTION
step_returns = np.zeros_like(step_rewards)
for i in range(len(step_rewards)):
    running = 0.0
    for t in reversed(range(int(turn_mask[i].sum()))):
        running = step_rewards[i, t] + gamma * running
        step_returns[i, t] = running
step_advantages = np.zeros_like(step_rewards)
for key in {k for keys in anchors for k in keys}:
    members = [(i, t) for i, keys in enumerate(anchors) for t, k in enumerate(keys) if k == key]
    if len(members) > 1:
        values = np.array([step_returns[i, t] for i, t in members])
        for (i, t), value in zip(members, values, strict=True):
            step_advantages[i, t] = (value - values.mean()) / (values.std(ddof=1) + 1e-6)
# STUB
# step_advantages = None  # your code: discounted returns per step, then normalise within each anchor group
# END SOLUTION
ok = check_gigpo_step_advantages(step_advantages, step_rewards, turn_mask, anchors, gamma)

combined = gigpo_advantages(th.tensor(step_rewards), th.tensor(turn_mask), anchors, gamma=gamma).numpy()
episode_part = grpo_advantages(th.tensor(step_rewards.sum(axis=1))).numpy()
print("GRPO (every step of a rollout):\n", np.round(episode_part[:, None] * turn_mask, 2))
print("GiGPO (episode + step):\n", np.round(combined, 2))

# %% [markdown]
# Read the two tables. GRPO gives every step of a rollout one value. GiGPO's step part ranks the actions taken
# from the same state: in `{dA}` the right answer against the wrong one; in `{dB}` rollout 2's search of A
# (which led to the answer) against rollout 3's wrong answer; and in the start state `{}` the discount makes
# rollout 0's direct path (return $\gamma$) worth a little more than rollout 2's detour (return $\gamma^2$).
# Rollout 2's last step is alone in its state and keeps only the episode advantage. The anchors come from the
# environment: no extra rollouts, no critic. With outcome rewards only, an all-fail group still gets all-zero
# step advantages (every return is 0); the step part redistributes credit when some rollouts succeed.
#
# ## 4. Training a tiny agent: GRPO vs GiGPO
#
# `palaestra.agents.llm.trainer` implements the whole loop: a tiny Qwen2-architecture model with a word-level
# tokenizer fitted to the env's texts (the trainer's default is byte-level BPE, which pays off on a world the
# agent never saw; one world's words learn faster), a **supervised warm start** on the oracle's messages (RL from a random
# model would never see a reward), then RL updates of `n_prompts` questions $\times$ `group_size` rollouts.
# We use the README's 1-hop recipe (`hops=1, top_k=1, max_doc_chars=300, max_turns=3`) at a small budget, train
# the warm start once, and start both methods from the same saved copy.

# %%
env_kwargs = {"hops": 1, "top_k": 1, "max_doc_chars": 300, "max_turns": 3}
common = {"group_size": 8, "n_prompts": N_PROMPTS, "learning_rate": 3e-4, "max_new_tokens": 10, "max_length": 384,
          "tiny_model_kwargs": {"tokenizer": "word"}}  # fmt: skip
warm = GRPO(
    "ToolSearch-v0",
    env_kwargs,
    model="tiny",
    sft_steps=SFT_STEPS,
    sft_episodes=SFT_EPISODES,
    eval_questions=EVAL_QUESTIONS,
    seed=0,
    **common,
)
print(f"tiny model: {sum(p.numel() for p in warm.model.parameters()):,} parameters")
sft_stats = warm.sft()
start = warm.evaluate_splits(splits=("train", "dev", "hot"))
print(f"after {SFT_STEPS} SFT updates: token probability {sft_stats['sft/token_prob']:.2f}, "
      f"EM train {start['eval/train_em']:.2f} / dev {start['eval/dev_em']:.2f} / hot {start['eval/hot_em']:.2f}")  # fmt: skip
checkpoint = Path(tempfile.mkdtemp(prefix="lesson08-")) / "sft"
warm.save(checkpoint)

# %%
curves: dict[str, list[dict[str, float]]] = {}
final: dict[str, dict[str, float]] = {}
for name, cls in (("GRPO", GRPO), ("GiGPO", GiGPO)):
    agent = cls.load(checkpoint, seed=1)
    log: list[dict[str, float]] = []
    agent.learn(RL_UPDATES, callback=lambda agent, stats, log=log: log.append(stats))
    curves[name] = log
    final[name] = agent.evaluate_splits(splits=("train", "dev", "hot"))
    seconds = np.mean([s["time/step_s"] for s in log])
    print(f"{name:6} {seconds:.2f} s per update; EM train {final[name]['eval/train_em']:.2f} / dev "
          f"{final[name]['eval/dev_em']:.2f} / hot {final[name]['eval/hot_em']:.2f}")  # fmt: skip

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, log in curves.items():
    updates = np.arange(1, len(log) + 1)
    axes[0].plot(updates, [s["rollout/em"] for s in log], marker="o", label=name)
    axes[1].plot(updates, [s["rollout/zero_variance_groups"] for s in log], marker="o", label=name)
axes[0].set_ylabel("EM of the sampled rollouts")
axes[1].set_ylabel("share of zero-variance groups")
for ax in axes:
    ax.set_xlabel("RL update")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
fig.suptitle(f"1-hop ToolSearch-v0 from one SFT start ({SFT_STEPS} SFT updates), G = 8")
plt.show()

# %% [markdown]
# What to look for:
#
# * **The warm start does most of the work.** With a short warm start the model may not yet answer any
#   question right, and then every group has zero variance: GRPO's advantages are all 0 and RL cannot start.
#   (Raise `SFT_STEPS` towards the README's 1200 to see EM leave 0; the README reports dev EM about 0.44 after
#   that warm start.)
# * **Zero-variance groups** (right plot) are the share of questions whose 8 rollouts all got the same reward.
#   With EM rewards such a group teaches neither method anything: its step returns are all equal too.
# * **Hot-world EM** stays near 0: the hot world's names never appear in the warm-start data, so the tiny model
#   has not learned to write them into a query. This is lesson 7's memorisation-versus-search test in action.
#   A model that copies instead of recalling needs pieces it can spell unseen names with (`tokenizer="bpe"`) and
#   training questions about too many names to memorise (`ToolSearch-v0`'s `train_worlds`); the
#   `benchmarks.llm_hot_world` table shows what that gives.
#
# The numbers this lesson prints for the two methods:

# %%
for name, scores in final.items():
    gain = scores["eval/dev_em"] - start["eval/dev_em"]
    print(f"{name:6} dev EM {start['eval/dev_em']:.2f} -> {scores['eval/dev_em']:.2f} ({gain:+.2f}) "
          f"after {RL_UPDATES} updates; mean zero-variance share "
          f"{np.mean([s['rollout/zero_variance_groups'] for s in curves[name]]):.2f}")  # fmt: skip

# %% [markdown]
# **Question.** In a 1-hop task with `max_turns=3` most rollouts of a question search the same entity first.
# Which anchor groups will GiGPO form, and why does that limit how much its step advantages add over GRPO
# here?
#
# BEGIN SOLUTION
# Every rollout starts in the empty state, so the first steps form one big group; after the same first search
# they share the state holding the entity's document, so the answer steps form a second group. Within these
# groups the discounted returns differ only through the final reward, so the step advantages mostly repeat the
# episode advantage (scaled by gamma): with one useful search there is little credit to redistribute. Step
# credit pays off in longer, multi-hop episodes, where rollouts diverge and meet again in shared states.
# END SOLUTION
#
# **Further reading.** DeepSeekMath (arXiv:2402.03300) for GRPO; PPO (arXiv:1707.06347) for the clipped
# surrogate; GiGPO (arXiv:2505.10978) for anchor-state grouping; IGPO (arXiv:2510.14967) for turn rewards from
# information gain; DAPO (arXiv:2503.14476) for clip-higher and token-mean losses.
