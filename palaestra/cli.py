"""The ``palaestra`` command: ``list`` env ids, ``train`` an agent, ``eval`` a checkpoint, ``collect`` offline data.

User errors (an unknown id or algorithm, a bad keyword, a missing checkpoint) print one line to stderr
and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym

import palaestra
from palaestra.agents import ALGORITHMS, AlgorithmSpec, get_algorithm
from palaestra.evaluation import EvaluationResult, evaluate

__all__ = ["main"]

METADATA_FILE = "palaestra.json"
MODEL_STEM = "model"


class UsageError(Exception):
    """A mistake in the command line: reported in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    """Turn ``["a=1", "b=0.5", "c=relu"]`` into ``{"a": 1, "b": 0.5, "c": "relu"}`` (Python literals, else strings)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must be given as key=value, got {item!r}")
        try:
            result[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            result[key] = raw
    return result


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make`` with user errors (unknown id, wrong keyword or value) turned into :class:`UsageError`."""
    try:
        return gym.make(env_id, **env_kwargs)
    except (gym.error.Error, TypeError, ValueError) as error:
        kwargs = f" with {env_kwargs}" if env_kwargs else ""
        raise UsageError(f"cannot make env {env_id!r}{kwargs}: {error}") from None


def _is_offline_id(env_id: str) -> bool:
    from palaestra.envs.offline import parse_offline_env_id

    try:
        parse_offline_env_id(env_id)
    except ValueError:
        return False
    return True


def _check_action_space(spec: AlgorithmSpec, env: gym.Env, env_id: str) -> None:
    space = type(env.action_space).__name__
    if spec.action_spaces and space not in spec.action_spaces:
        raise UsageError(f"{spec.name} needs a {' or '.join(spec.action_spaces)} action space, but {env_id} has {space}")


def train(args: argparse.Namespace) -> int:
    """Build the algorithm on the env, train it with a progress bar and write logs and the checkpoint."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    spec = _algorithm(args.algo)
    if args.timesteps < 1:
        raise UsageError(f"--timesteps must be >= 1, got {args.timesteps}")
    if args.n_envs < 1:
        raise UsageError(f"--n-envs must be >= 1, got {args.n_envs}")
    out = Path(args.out)
    if (out / METADATA_FILE).exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a checkpoint; choose another --out or pass --overwrite")
    env_kwargs = parse_assignments(args.env_kwargs, "--env-kwargs")
    if args.no_progress_bar and _is_offline_id(args.env):
        env_kwargs.setdefault("progress", False)  # the bar of a dataset generated on first use, too
    hyperparams = parse_assignments(args.hyperparams, "--hyperparams")
    if args.model is not None:  # LLM agents: "tiny" or a local model directory
        hyperparams["model"] = args.model
    _check_action_space(spec, make_env(args.env, env_kwargs), args.env)
    _set_threads(args.threads)

    builder = spec.load_builder()
    try:
        if builder is not None:
            model = builder(args.env, env_kwargs, args.seed, hyperparams)
        else:
            env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=env_kwargs)
            positional = () if spec.policy is None else (spec.policy,)
            model = spec.load_class()(*positional, env, seed=args.seed, verbose=0, **hyperparams)
    except (TypeError, ValueError) as error:
        raise UsageError(f"cannot build {spec.name} with {hyperparams}: {error}") from None
    out.mkdir(parents=True, exist_ok=True)
    formats = ["stdout", "csv", "tensorboard"] if args.verbose else ["csv", "tensorboard"]
    model.set_logger(configure(str(out), formats))
    model.learn(total_timesteps=args.timesteps, progress_bar=not args.no_progress_bar)
    model.save(out / MODEL_STEM)
    metadata = {
        "algo": spec.name,
        "env_id": args.env,
        "env_kwargs": env_kwargs,
        "hyperparams": hyperparams,
        "timesteps": args.timesteps,
        "seed": args.seed,
        "n_envs": args.n_envs,
        "palaestra_version": palaestra.__version__,
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"trained {spec.name} on {args.env} for {args.timesteps} steps; checkpoint and logs in {out}")
    return 0


def load_checkpoint(checkpoint: str, algo: str | None) -> tuple[Any, dict[str, Any]]:
    """Load a ``palaestra train`` output directory (or a bare SB3 ``.zip`` with ``algo`` given).

    Returns:
        The agent and the checkpoint's metadata (empty for a bare ``.zip``).
    """
    path = Path(checkpoint)
    if not path.exists():
        raise UsageError(f"checkpoint {checkpoint!r} does not exist")
    if path.is_dir():
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise UsageError(f"{checkpoint!r} is not a palaestra checkpoint: it has no {METADATA_FILE}")
        metadata = json.loads(metadata_path.read_text())
        if algo is not None and algo != metadata["algo"]:
            raise UsageError(f"checkpoint {checkpoint!r} holds a {metadata['algo']!r} agent, not {algo!r}")
        spec, model_path = _algorithm(metadata["algo"]), path / MODEL_STEM
    else:
        if algo is None:
            raise UsageError(f"{checkpoint!r} is a file; pass --algo to say which algorithm saved it")
        spec, model_path, metadata = _algorithm(algo), path, {}
    try:
        return spec.load_class().load(model_path), metadata
    except (ValueError, KeyError, RuntimeError) as error:
        raise UsageError(f"cannot load {checkpoint!r} as {spec.name}: {error}") from None


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on its training env, or another, optionally perturbed."""
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    _set_threads(args.threads)
    model, metadata = load_checkpoint(args.checkpoint, args.algo)
    env_id = args.env or metadata.get("env_id")
    if env_id is None:
        raise UsageError("pass --env: a bare .zip checkpoint does not record its env")
    env_kwargs = {**(metadata.get("env_kwargs", {}) if env_id == metadata.get("env_id") else {})}
    env_kwargs.update(parse_assignments(args.env_kwargs, "--env-kwargs"))
    perturbation = parse_assignments(args.perturbation, "--perturbation")
    if perturbation:
        env_kwargs["perturbation"] = perturbation
    if args.cdsa:
        model = _wrap_in_cdsa(model, args.cdsa, parse_assignments(args.cdsa_kwargs, "--cdsa-kwargs"))
    env = make_env(env_id, env_kwargs)
    expected_space = getattr(model, "observation_space", None)
    if expected_space is not None and env.observation_space != expected_space:
        raise UsageError(f"{env_id} observes {env.observation_space}, but the checkpoint expects {expected_space}")
    result = evaluate(model, env, n_episodes=args.episodes, seed=args.seed, deterministic=not args.stochastic)
    normalized = normalized_scores(env, result)
    if args.json:
        print(json.dumps({"env_id": env_id, "env_kwargs": env_kwargs, **result.to_dict(), **normalized}))
    else:
        label = f"{env_id} {perturbation}" if perturbation else env_id
        score = (
            f"; D4RL-normalised score {normalized['normalized_score']:.1f} ({result.confidence_level:.0%} CI "
            f"{normalized['normalized_ci_low']:.1f} to {normalized['normalized_ci_high']:.1f})"
            if normalized
            else ""
        )
        print(f"{label}: {result}{score}")
    return 0


def normalized_scores(env: gym.Env, result: EvaluationResult) -> dict[str, float]:
    """An offline env's D4RL-normalised (x100) mean return and CI bounds; empty for an env without a reference."""
    try:
        normalize = env.get_wrapper_attr("get_normalized_score")
    except AttributeError:
        return {}
    bounds = {"normalized_score": result.mean, "normalized_ci_low": result.ci_low, "normalized_ci_high": result.ci_high}
    return {key: 100.0 * float(normalize(value)) for key, value in bounds.items()}


def _wrap_in_cdsa(policy: Any, score_checkpoint: str, knobs: dict[str, Any]) -> Any:
    """Wrap ``policy`` in CDSA's acting-time correction with a ``palaestra train --algo cdsa-score`` model."""
    from palaestra.agents.offline.cdsa import CDSA

    score_model, _ = load_checkpoint(score_checkpoint, "cdsa-score")
    try:
        return CDSA(policy, score_model, **knobs)
    except (TypeError, ValueError) as error:
        raise UsageError(f"cannot apply CDSA from {score_checkpoint!r}: {error}") from None


def list_environments(args: argparse.Namespace) -> int:
    """Print every env id with its description."""
    envs = palaestra.list_envs()
    if args.json:
        print(json.dumps(envs, indent=2))
        return 0
    width = max(map(len, envs))
    for env_id, description in envs.items():
        print(f"{env_id:<{width}}  {description}")
    return 0


def collect(args: argparse.Namespace) -> int:
    """Generate the offline datasets of the given ids (``hopper-medium-v0``, ...) into the Minari root."""
    from palaestra.envs.offline import generate_dataset, minari_root, parse_offline_env_id

    if args.size is not None and args.size < 1:
        raise UsageError(f"--size must be >= 1, got {args.size}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    try:
        targets = [parse_offline_env_id(env_id) for env_id in args.env]
    except ValueError as error:
        raise UsageError(str(error)) from None
    for task, kind in targets:
        try:
            dataset = generate_dataset(
                task, kind, args.size, args.seed, overwrite=args.overwrite, progress=not args.no_progress_bar
            )
        except (FileExistsError, FileNotFoundError, ValueError, OSError) as error:
            raise UsageError(str(error)) from None
        print(
            f"wrote {dataset.spec.dataset_id} ({dataset.total_steps} steps, {dataset.total_episodes} episodes) "
            f"to {minari_root()}"
        )
    return 0


def bench(args: argparse.Namespace) -> int:
    """Time ``env.step`` of each env under random actions; print steps/s and the time ratio to the first env."""
    from palaestra.throughput import step_timings

    if args.steps < 1 or args.repeats < 1:
        raise UsageError(f"--steps and --repeats must be >= 1, got {args.steps} and {args.repeats}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    envs: dict[str, gym.Env] = {}
    try:
        for env_id in dict.fromkeys(args.env):
            envs[env_id] = make_env(env_id, {})
            if isinstance(envs[env_id].action_space, gym.spaces.Text):
                raise UsageError(
                    f"{env_id} takes text messages, and random strings would only time its invalid-message path; "
                    "bench envs with numeric action spaces"
                )
        timings = step_timings(envs, args.steps, args.repeats, args.seed)
    finally:
        for env in envs.values():
            env.close()
    baseline = timings[args.env[0]].median_s
    rows = {
        env_id: {"steps_per_s": 1.0 / timing.median_s, "time_ratio": timing.median_s / baseline, **timing.to_dict()}
        for env_id, timing in timings.items()
    }
    if args.json:
        print(json.dumps({"steps": args.steps, "repeats": args.repeats, "seed": args.seed, "envs": rows}))
        return 0
    width = max(map(len, rows))
    print(f"{'env':<{width}}  {'steps/s':>10}  {'time vs ' + args.env[0]}")
    for env_id, row in rows.items():
        print(f"{env_id:<{width}}  {row['steps_per_s']:>10,.0f}  {row['time_ratio']:.2f}")
    print(f"median of {args.repeats} interleaved rounds of {args.steps} random-action steps, resets included")
    return 0


def _algorithm(name: str) -> AlgorithmSpec:
    try:
        return get_algorithm(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``palaestra`` command."""
    parser = _Parser(prog="palaestra", description="Gymnasium environments and RL agents behind one policy protocol.")
    parser.add_argument("--version", action="version", version=f"palaestra {palaestra.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = commands.add_parser("list", help="list the registered env ids")
    listing.add_argument("--json", action="store_true", help="print a JSON object {id: description}")
    listing.set_defaults(handler=list_environments)

    algos = ", ".join(f"{name} ({spec.description})" for name, spec in ALGORITHMS.items())
    training = commands.add_parser("train", help="train an agent and write a checkpoint")
    training.add_argument("--algo", required=True, help=f"algorithm: {algos}")
    training.add_argument("--env", required=True, help="env id, e.g. RobustCartPole-v0")
    training.add_argument("--timesteps", type=int, default=100_000, help="env steps to train for (default 100000)")
    training.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    training.add_argument("--out", required=True, help="output directory: checkpoint, CSV and TensorBoard logs")
    training.add_argument("--n-envs", type=int, default=1, help="parallel env copies (default 1)")
    training.add_argument("--env-kwargs", nargs="*", metavar="KEY=VALUE", help="keyword arguments of the env")
    training.add_argument("--hyperparams", nargs="*", metavar="KEY=VALUE", help="keyword arguments of the algorithm")
    training.add_argument("--model", help="LLM agents only: 'tiny' or the path of a local Hugging Face model directory")
    training.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for small networks)")
    training.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    training.add_argument("--no-progress-bar", action="store_true", help="hide the progress bar")
    training.add_argument("--verbose", action="store_true", help="also print SB3's log tables to stdout")
    training.set_defaults(handler=train)

    evaluating = commands.add_parser("eval", help="evaluate a checkpoint")
    evaluating.add_argument("--checkpoint", required=True, help="directory written by `palaestra train` (or an SB3 .zip)")
    evaluating.add_argument("--algo", help="expected algorithm (required for a bare .zip)")
    evaluating.add_argument("--env", help="env id (default: the one it was trained on)")
    evaluating.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    evaluating.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    evaluating.add_argument("--env-kwargs", nargs="*", metavar="KEY=VALUE", help="keyword arguments of the env")
    evaluating.add_argument(
        "--perturbation", nargs="*", metavar="PARAM=FACTOR", help="scale physical parameters, e.g. length=2.0 masspole=1.5"
    )
    evaluating.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    evaluating.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    evaluating.add_argument("--cdsa", metavar="DIR", help="correct the actions with a `--algo cdsa-score` checkpoint")
    evaluating.add_argument("--cdsa-kwargs", nargs="*", metavar="KEY=VALUE", help="CDSA knobs, e.g. step_size=0.5 n_steps=5")
    evaluating.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluating.set_defaults(handler=evaluate_checkpoint)

    collecting = commands.add_parser("collect", help="generate offline datasets (Minari) for offline env ids")
    collecting.add_argument(
        "--env", nargs="+", required=True, help="offline env ids, e.g. hopper-medium-v0 pendulum-expert-v0"
    )
    collecting.add_argument("--size", type=int, help="transitions per dataset (default: the id's standard size)")
    collecting.add_argument("--seed", type=int, default=0, help="generation seed (default 0: the canonical dataset)")
    collecting.add_argument("--overwrite", action="store_true", help="replace a dataset that already exists")
    collecting.add_argument("--no-progress-bar", action="store_true", help="hide the progress bar")
    collecting.set_defaults(handler=collect)

    benchmarking = commands.add_parser("bench", help="time env steps under random actions, relative to the first env")
    benchmarking.add_argument(
        "--env", nargs="+", action="extend", required=True, help="env ids; the first is the baseline of the ratios"
    )
    benchmarking.add_argument("--steps", type=int, default=5000, help="steps per timed round (default 5000)")
    benchmarking.add_argument("--repeats", type=int, default=5, help="timed rounds per env (default 5)")
    benchmarking.add_argument("--seed", type=int, default=0, help="seed of the resets and random actions (default 0)")
    benchmarking.add_argument("--json", action="store_true", help="print the result as JSON")
    benchmarking.set_defaults(handler=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``palaestra`` command line and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"palaestra {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
