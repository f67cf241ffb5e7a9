r"""Train the behaviour policies behind palaestra's offline datasets (SAC, as D4RL did), resumably.

For one Gymnasium env this trains Stable-Baselines3's SAC, evaluates a deterministic snapshot of the
actor every ``--eval-every`` env steps and keeps every snapshot. When the run ends (step budget or
``--time-limit``) it selects, as D4RL defines them:

* ``expert``: the snapshot with the best evaluation return;
* ``medium``: the earlier snapshot, taken after SAC's first update (``--learning-starts``), whose return is
  closest to one third of the way from a uniform random policy's return to the expert's (D4RL: "about a
  third of the expert's performance"); if no trained snapshot precedes the expert's, any other trained one;
* ``medium_replay``: the SAC replay buffer up to the medium snapshot's step (whole episodes only).

It writes ``<env>_expert.npz``, ``<env>_medium.npz`` (actor weights in the layout read by
:func:`palaestra.envs.offline.policies.load_actor`), ``<env>_medium_replay.npz`` (episodes in Minari's
layout: ``observations`` holds T+1 rows per episode) and ``<env>_manifest.json`` (command, seed, steps,
returns). ``--resume`` continues a run from its ``state/`` folder (model, replay buffer, snapshots).

Runs longer than one sitting (the MuJoCo experts) split the two levels, as D4RL did: ``--level expert``
keeps only the best snapshot and, with ``--carry FILE``, writes a compact checkpoint (network weights,
entropy coefficient, evaluation curve, best actor; no optimiser state, no replay buffer) that a later run
with the same ``--carry`` resumes from, refilling the buffer with ``--refill`` steps of the carried policy
before updates resume. ``--level medium --stop-at-return R`` is the medium run: a fresh SAC run that stops
at the first evaluation reaching ``R`` (D4RL: a third of the expert's return; ``--expert-manifest`` computes
it from the expert run). Its trained snapshot whose return is closest to ``R`` (the last one, or an earlier
one when the return jumped past ``R``) is the medium policy, and its replay buffer up to that snapshot is
medium-replay.

Examples (the shipped Pendulum-v1 policies; a MuJoCo expert, then its medium run)::

    python scripts/train_behaviour_policies.py --env Pendulum-v1 --steps 20000 --eval-every 1000 --out runs/behaviour
    python scripts/train_behaviour_policies.py --env Hopper-v5 --level expert --steps 1000000 \
        --carry scripts/checkpoints/hopper_sac.pt --time-limit 3600 --out runs/behaviour/hopper
    python scripts/train_behaviour_policies.py --env Hopper-v5 --level medium --steps 1000000 \
        --expert-manifest runs/behaviour/hopper/hopper_expert_manifest.json --out runs/behaviour/hopper-medium
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from palaestra.envs.offline.behaviour_training import evaluate_return


def command_line() -> str:
    """This run's command, with the script named relative to the repository (as a user would type it)."""
    return " ".join(["scripts/train_behaviour_policies.py", *sys.argv[1:]])


def export_actor(model: SAC) -> dict[str, np.ndarray]:
    """The SAC actor's weights as float32 arrays, plus the env's action bounds."""
    actor = model.actor
    arrays: dict[str, np.ndarray] = {}
    linear_layers = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
    for i, layer in enumerate(linear_layers):
        arrays[f"hidden_{i}_weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"hidden_{i}_bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    arrays["mean_weight"] = actor.mu.weight.detach().cpu().numpy().astype(np.float32)
    arrays["mean_bias"] = actor.mu.bias.detach().cpu().numpy().astype(np.float32)
    arrays["log_std_weight"] = actor.log_std.weight.detach().cpu().numpy().astype(np.float32)
    arrays["log_std_bias"] = actor.log_std.bias.detach().cpu().numpy().astype(np.float32)
    arrays["action_low"] = np.asarray(model.action_space.low, dtype=np.float32)
    arrays["action_high"] = np.asarray(model.action_space.high, dtype=np.float32)
    return arrays


class SnapshotCallback(BaseCallback):
    """Evaluate and keep an actor snapshot every ``every`` steps; stop at ``deadline`` or at ``stop_at``.

    ``deadline`` is a ``time.time()``; ``stop_at`` an evaluation return. With ``best_only`` only the best
    snapshot keeps its actor.
    """

    def __init__(
        self,
        state: dict,
        env_id: str,
        every: int,
        episodes: int,
        seed: int,
        deadline: float,
        stop_at: float | None = None,
        best_only: bool = False,
    ) -> None:
        super().__init__()
        self.state, self.env_id, self.every, self.episodes = state, env_id, every, episodes
        self.seed, self.deadline, self.stop_at, self.best_only = seed, deadline, stop_at, best_only

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        if step % self.every == 0:
            mean_return = evaluate_return(self.model, self.env_id, self.episodes, self.seed + 10_000)
            snapshot = {"step": step, "return": mean_return, "actor": export_actor(self.model)}
            if self.best_only:
                best = max(self.state["snapshots"], key=lambda s: s["return"], default=None)
                if best is not None and best["return"] >= mean_return:
                    snapshot.pop("actor")
                elif best is not None:
                    best.pop("actor", None)
            self.state["snapshots"].append(snapshot)
            print(f"[{self.env_id}] step {step} eval return {mean_return:.1f} ({time.strftime('%H:%M:%S')})", flush=True)
            if self.stop_at is not None and mean_return >= self.stop_at:
                return False
        return time.time() < self.deadline


def save_state(model: SAC, state: dict, folder: Path) -> None:
    """Write the model, its replay buffer and the snapshots so that ``--resume`` can continue."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model")
    model.save_replay_buffer(folder / "replay_buffer")
    torch.save(state, folder / "snapshots.pt")


def write_carry(model: SAC, state: dict, path: Path) -> None:
    """The compact cross-sitting checkpoint: weights, entropy coefficient, step count and snapshots (atomic)."""
    carry = {
        "policy": model.policy.state_dict(),
        "log_ent_coef": model.log_ent_coef.detach().clone(),
        "num_timesteps": int(model.num_timesteps),
        "state": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(carry, partial)
    os.replace(partial, path)


def resume_from_carry(path: Path, env_id: str, args: argparse.Namespace) -> tuple[SAC, dict]:
    """Rebuild SAC from a :func:`write_carry` file; its replay buffer starts empty (see ``--refill``)."""
    carry = torch.load(path, weights_only=False)
    model = SAC("MlpPolicy", gym.make(env_id), seed=args.seed + carry["num_timesteps"], learning_starts=0,
                buffer_size=args.buffer_size, device=args.device, verbose=0)  # fmt: skip
    model.policy.load_state_dict(carry["policy"])
    with torch.no_grad():
        model.log_ent_coef.copy_(carry["log_ent_coef"])
    model.num_timesteps = carry["num_timesteps"]
    return model, carry["state"]


def refill_buffer(model: SAC, steps: int, callback: BaseCallback) -> None:
    """Collect ``steps`` env steps with the current policy and no gradient step (after resuming from a carry)."""
    gradient_steps, model.gradient_steps = model.gradient_steps, 0
    model.learn(total_timesteps=steps, callback=callback, reset_num_timesteps=False)
    model.gradient_steps = gradient_steps


def replay_episodes(model: SAC, upto: int) -> dict[str, np.ndarray]:
    """The replay buffer's first ``upto`` transitions as whole episodes in Minari's layout (env action units)."""
    buffer = model.replay_buffer
    n = min(upto, buffer.pos if not buffer.full else buffer.buffer_size)
    obs = buffer.observations[:n, 0]
    next_obs = buffer.next_observations[:n, 0]
    actions = buffer.actions[:n, 0]
    low, high = model.action_space.low, model.action_space.high
    actions = low + 0.5 * (actions + 1.0) * (high - low)  # SB3 stores actions rescaled to [-1, 1]
    dones = buffer.dones[:n, 0].astype(bool)
    timeouts = buffer.timeouts[:n, 0].astype(bool)
    ends = np.flatnonzero(dones)
    if len(ends) == 0:
        raise RuntimeError(f"no complete episode in the first {n} replay transitions")
    n = ends[-1] + 1  # whole episodes only
    starts = np.concatenate([[0], ends[:-1] + 1])
    observations = []
    for s, e in zip(starts, ends, strict=True):
        observations.append(obs[s : e + 1])
        observations.append(next_obs[e : e + 1])
    return {
        "observations": np.concatenate(observations).astype(np.float32),
        "actions": actions[:n].astype(np.float32),
        "rewards": buffer.rewards[:n, 0].astype(np.float32),
        "terminations": (dones & ~timeouts)[:n],
        "truncations": timeouts[:n],
        "episode_lengths": (ends - starts + 1).astype(np.int64),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--steps", type=int, required=True, help="total SAC env steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=float("inf"), help="seconds of training before stopping")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--level", choices=("both", "expert", "medium"), default="both",
                        help="which policies this run selects (default both, from one run)")  # fmt: skip
    parser.add_argument("--stop-at-return", type=float, help="medium run: stop at the first evaluation reaching this")
    parser.add_argument("--expert-manifest", help="medium run: stop at a third of the way to this expert's return")
    parser.add_argument("--carry", help="expert run: compact checkpoint to resume from and write at the end")
    parser.add_argument("--refill", type=int, default=10_000, help="steps of the carried policy before updates resume")
    args = parser.parse_args(argv)
    if args.level == "medium" and args.expert_manifest:
        expert = json.loads(Path(args.expert_manifest).read_text())
        args.stop_at_return = expert["random_return"] + (expert["expert"]["return"] - expert["random_return"]) / 3.0
    if args.level == "medium" and args.stop_at_return is None:
        parser.error("--level medium needs --stop-at-return or --expert-manifest")
    if args.carry and args.level != "expert":
        parser.error("--carry keeps no replay buffer, so it is for --level expert runs only")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train, snapshot, select expert/medium and write the results (see the module docstring)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    state_dir = out / "state"
    name = args.env.split("-")[0].lower()
    deadline = time.time() + args.time_limit
    carry = Path(args.carry) if args.carry else None
    refill = 0
    if args.resume and (state_dir / "model.zip").exists():
        model = SAC.load(state_dir / "model", env=gym.make(args.env), device=args.device)
        model.load_replay_buffer(state_dir / "replay_buffer")
        state = torch.load(state_dir / "snapshots.pt", weights_only=False)
        state["commands"].append(command_line())
        reset = False
    elif carry is not None and carry.exists():
        model, state = resume_from_carry(carry, args.env, args)
        state["commands"].append(command_line())
        reset, refill = False, args.refill
    else:
        env = gym.make(args.env)
        model = SAC(
            "MlpPolicy",
            env,
            seed=args.seed,
            learning_starts=args.learning_starts,
            buffer_size=args.buffer_size,
            device=args.device,
            verbose=0,
        )
        random_return = evaluate_return(None, args.env, 10, args.seed + 20_000)
        state = {"snapshots": [], "random_return": random_return, "commands": [command_line()], "train_seconds": 0.0}
        state["best_only"] = args.level == "expert"
        reset = True
    remaining = args.steps - model.num_timesteps
    started = time.time()
    stop_at = args.stop_at_return if args.level == "medium" else None
    callback = SnapshotCallback(
        state, args.env, args.eval_every, args.eval_episodes, args.seed, deadline, stop_at, args.level == "expert"
    )
    if remaining > 0 and refill > 0:
        refill_buffer(model, min(refill, remaining), callback)
        remaining = args.steps - model.num_timesteps
    if remaining > 0 and time.time() < deadline:
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=reset)
    state["train_seconds"] += time.time() - started
    if carry is not None:
        write_carry(model, state, carry)
    else:
        save_state(model, state, state_dir)
    write_outputs(model, state, args, out, name)
    return 0


def medium_run_snapshot(snapshots: list[dict], target: float, learning_starts: int) -> dict:
    """The medium policy of a medium run: its trained snapshot whose return is closest to ``target``.

    SAC's return can jump well past the target between two evaluations; then an earlier snapshot is closer.
    """
    trained = [s for s in snapshots if s["step"] > learning_starts] or snapshots[-1:]
    return min(trained, key=lambda s: abs(s["return"] - target))


def write_outputs(model: SAC, state: dict, args: argparse.Namespace, out: Path, name: str) -> None:
    """Select the level(s) this run provides and write the actors, medium-replay and manifest."""
    snapshots = state["snapshots"]
    if not snapshots:
        raise RuntimeError("no snapshot was taken; train for at least --eval-every steps")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "env_id": args.env,
        "algorithm": "stable-baselines3 SAC (default hyperparameters)",
        "seed": args.seed,
        "learning_starts": args.learning_starts,
        "buffer_size": args.buffer_size,
        "total_steps": int(model.num_timesteps),
        "train_seconds": round(state["train_seconds"], 1),
        "device": args.device,
        "torch_threads": args.threads,
        "eval_episodes": args.eval_episodes,
        "random_return": state["random_return"],
    }
    if args.level in ("both", "expert"):
        expert = max((s for s in snapshots if "actor" in s), key=lambda s: (s["return"], s["step"]))
        np.savez(out / f"{name}_expert.npz", **expert["actor"])
        manifest["expert"] = {"step": expert["step"], "return": expert["return"]}
    if args.level == "medium":
        if snapshots[-1]["return"] < args.stop_at_return:
            raise RuntimeError(f"the medium run ended at return {snapshots[-1]['return']:.1f} before reaching "
                               f"{args.stop_at_return:.1f}; resume it with --resume and a larger --steps")  # fmt: skip
        target = args.stop_at_return
        medium = medium_run_snapshot(snapshots, target, args.learning_starts)
    elif args.level == "both":
        target = state["random_return"] + (manifest["expert"]["return"] - state["random_return"]) / 3.0
        # medium: a trained (step > learning_starts) snapshot earlier than the expert's
        trained = [s for s in snapshots if s["step"] > args.learning_starts]
        # (when the best return came before any other trained snapshot, any other trained snapshot qualifies)
        earlier = [s for s in trained if s["step"] < expert["step"]] or [s for s in trained if s is not expert]
        medium = min(earlier or [expert], key=lambda s: abs(s["return"] - target))
    if args.level in ("both", "medium"):
        np.savez(out / f"{name}_medium.npz", **medium["actor"])
        replay = replay_episodes(model, medium["step"])
        np.savez_compressed(out / f"{name}_medium_replay.npz", **replay)
        manifest["medium"] = {"step": medium["step"], "return": medium["return"], "target_return": target}
        manifest["medium_replay_transitions"] = len(replay["actions"])  # whole episodes before the medium snapshot
    manifest["eval_curve"] = [[s["step"], s["return"]] for s in snapshots]
    manifest["commands"] = state["commands"]
    suffix = "" if args.level == "both" else f"_{args.level}"
    (out / f"{name}{suffix}_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: v for k, v in manifest.items() if k != "eval_curve"}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
