"""Generate the documentation's data-driven pages: the env gallery, the dataset cards and the claim tables.

    python docs/gallery.py [OUT_DIR]        # default docs/_generated; the Sphinx build calls main() itself

Writes, under ``OUT_DIR``:

- ``gallery.md``: animations of the control envs under a fixed policy (nominal and perturbed side by side) and of
  Hopper-v5 under the shipped expert and medium policies, transcripts of one ToolSearch-v0 and one TextWorld-v0
  episode, and a card per offline dataset (size, episodes, return distribution, normalised score);
- ``claims/<page>.md``, one per agent page of docs/agents/ (:data:`CLAIM_PAGES`): the benchmarks' claim tables
  rendered from ``benchmarks/results/*.json`` by the benchmarks' own renderers;
- ``media/``: the GIFs, the cards' histograms and copies of the benchmark plots the pages show.

Everything is written into a temporary folder first and moved into place at the end, so a generation that fails
leaves the previous pages as they were. Parts that need an optional package (Pillow for the GIFs, matplotlib for the
histograms, textworld, an OpenGL backend for MuJoCo) are replaced by a note saying what is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
if str(ROOT) not in sys.path:  # run as a script: make the checkout's palaestra and benchmarks importable
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_OUT = DOCS / "_generated"
#: The entries of OUT_DIR this script owns; anything else there (autosummary's stubs, the course page) is left alone.
OWNED = ("gallery.md", "claims", "media")
#: Transitions of the small pendulum datasets generated for the cards when the full ones are not on disk.
CARD_SIZE = 10_000
#: The controller of the cart-pole animation: push right when theta + 0.5 * theta_dot > 0 (a PD controller).
CARTPOLE_GAINS = (0.0, 0.0, 1.0, 0.5)
CARTPOLE_PERTURBATION = {"length": 2.0, "masspole": 2.0}
PENDULUM_PERTURBATION = {"torque_scale": 0.5}
MUJOCO_TASKS = ("hopper", "halfcheetah", "walker2d")
#: The claims files, one per agent page that includes one (``offline_scores``: the TD3+BC and IQL page).
CLAIM_PAGES = ("props", "drrpo", "sqirl", "offline_scores", "a2pr", "cdsa", "pgd", "llm")


class Page:
    """Markdown text being built, with the media it refers to; ``notes`` collects what was skipped and why."""

    def __init__(self, media: Path, media_link: str) -> None:
        self.parts: list[str] = []
        self.media, self.media_link = media, media_link
        self.notes: list[str] = []

    def add(self, text: str) -> None:
        """Append a block of Markdown."""
        self.parts.append(text.strip("\n") + "\n")

    def note(self, text: str) -> None:
        """Append a note box saying what this build left out, and remember it."""
        self.add(f":::{{note}}\n{text}\n:::")
        self.notes.append(text)

    def link(self, name: str) -> str:
        """The link from this page to a media file."""
        return f"{self.media_link}/{name}"

    def text(self) -> str:
        """The page's Markdown."""
        return "\n".join(self.parts)


def _missing(error: BaseException) -> str:
    """What an ImportError (or Gymnasium's DependencyNotInstalled) says is missing."""
    if isinstance(error, ImportError) and error.name:
        return f"`{error.name}` is not installed"
    return str(error) or type(error).__name__


# --- animations -------------------------------------------------------------------------------------------------------


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((4, 3), text)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(255, 255, 255))
    draw.text((4, 3), text, fill=(20, 20, 20))
    return np.asarray(image)


def _resize(frame: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(frame)
    height = round(image.height * width / image.width)
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def write_side_by_side_gif(panels: list[list[np.ndarray]], labels: list[str], path: Path, fps: float) -> int:
    """One GIF of equally sized frame sequences side by side (a finished one holds its last frame); returns frames.

    The palette (64 colours) is taken from the first frame and shared by all, which keeps the file small.
    """
    from PIL import Image

    n_frames = max(len(frames) for frames in panels)
    images = []
    for i in range(n_frames):
        row = [_label(frames[min(i, len(frames) - 1)], label) for frames, label in zip(panels, labels, strict=True)]
        gap = np.full((row[0].shape[0], 4, 3), 255, dtype=np.uint8)
        images.append(Image.fromarray(np.concatenate([part for frame in row for part in (frame, gap)][:-1], axis=1)))
    palette = images[0].quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    quantized = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    quantized[0].save(path, save_all=True, append_images=quantized[1:], duration=round(1000 / fps), loop=0, optimize=True)
    return n_frames


def run_episode(
    env: Any,
    act: Callable[[np.ndarray], Any],
    seed: int,
    frames: int,
    every: int,
    width: int,
    follow: Callable[[], None] = lambda: None,
) -> tuple[list[np.ndarray], float, int]:
    """Play one episode; render the first ``frames`` frames (one every ``every`` steps). Returns frames, return, length.

    ``follow`` runs before each frame (to move the camera).
    """
    observation, _ = env.reset(seed=seed)
    follow()
    shots, total, steps, done = [_resize(env.render(), width)], 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(act(observation))
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
        if len(shots) < frames and steps % every == 0:
            follow()
            shots.append(_resize(env.render(), width))
    return shots, total, steps


def _perturbation_text(perturbation: dict[str, float]) -> str:
    return ", ".join(f"{name} x{factor:g}" for name, factor in perturbation.items())


def control_gifs(page: Page, frames: int) -> None:
    """RobustCartPole-v0 under a PD controller and RobustPendulum-v0 under the shipped expert, nominal vs perturbed."""
    import gymnasium as gym

    import palaestra  # noqa: F401  (registers the ids)
    from palaestra.envs.offline.policies import load_behaviour_policy

    page.add("## Classical control")
    gains = np.asarray(CARTPOLE_GAINS)
    expert = load_behaviour_policy("pendulum", "expert")
    cases = [
        (
            "RobustCartPole-v0",
            CARTPOLE_PERTURBATION,
            lambda obs: int(obs @ gains > 0),
            2,
            240,
            "a hand-written PD controller (push right when theta + 0.5 theta_dot > 0, as in `examples/write_a_policy.py`)",
        ),
        (
            "RobustPendulum-v0",
            PENDULUM_PERTURBATION,
            lambda obs: expert(obs, None, True),
            1,
            160,
            "the shipped SAC expert behind `pendulum-expert-v0` "
            '(`load_behaviour_policy("pendulum", "expert")`, deterministic)',
        ),
    ]
    for env_id, perturbation, act, every, width, policy in cases:
        panels, stats = [], []
        for pert in (None, perturbation):
            env = gym.make(env_id, render_mode="rgb_array", perturbation=pert)
            shots, total, length = run_episode(env, act, seed=0, frames=frames, every=every, width=width)
            fps = env.metadata.get("render_fps", 30) / every
            env.close()
            panels.append(shots)
            stats.append((total, length))
        name = f"{env_id}.gif"
        labels = ["nominal", _perturbation_text(perturbation)]
        shown = write_side_by_side_gif(panels, labels, page.media / name, fps)
        page.add(
            f"### {env_id}\n\n![{env_id}, nominal and perturbed]({page.link(name)})\n\n"
            f"Left: nominal parameters; right: `perturbation={perturbation}`. Policy: {policy}. Episode seed 0; "
            f"the animation shows the first {shown} frames (every {'step' if every == 1 else f'{every}nd step'}). "
            f"Whole episodes: return {stats[0][0]:.1f} over {stats[0][1]} steps nominal, {stats[1][0]:.1f} over "
            f"{stats[1][1]} steps perturbed."
        )


def _follow_torso(env: Any) -> None:
    """Keep the free camera of a MuJoCo env on its torso (the default camera stays where the episode began)."""
    viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
    viewer.cam.lookat[0] = env.unwrapped.data.qpos[0]


def mujoco_gif(path: Path, frames: int, every: int = 4, width: int = 160) -> dict[str, Any]:
    """Hopper-v5 under the shipped expert and medium behaviour policies, side by side (run in a subprocess)."""
    import gymnasium as gym

    from palaestra.envs.offline.policies import load_behaviour_policy

    # One env (one GL context) for both episodes: a second context in the process rendered black frames here.
    env = gym.make("Hopper-v5", render_mode="rgb_array", width=width, height=width)
    env.unwrapped.model.vis.quality.offsamples = 0  # no multisampling: software GL renders 10x faster
    env.reset(seed=0)
    env.render()
    try:  # shadows and reflections cost most of a software-rendered frame
        import mujoco

        viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            viewer.scn.flags[flag] = 0
    except Exception:  # a private API: keep the default look if it moved
        pass
    panels, stats = [], {}
    for level in ("expert", "medium"):
        policy = load_behaviour_policy("hopper", level)
        shots, total, length = run_episode(
            env, lambda o, p=policy: p(o, None, True), 0, frames, every, width, follow=lambda: _follow_torso(env)
        )
        stats[level] = {"return": total, "length": length}
        panels.append(shots)
    fps = env.metadata["render_fps"] / every
    env.close()
    shown = write_side_by_side_gif(panels, ["expert", "medium"], path, fps)
    return {"frames": shown, "every": every, "fps": fps, **stats}


def mujoco_backends() -> list[str]:
    """The GL backends to try for headless MuJoCo: ``$MUJOCO_GL`` if set, else EGL then OSMesa."""
    return [os.environ["MUJOCO_GL"]] if os.environ.get("MUJOCO_GL") else ["egl", "osmesa"]


def start_mujoco_gif(path: Path, frames: int, backend: str) -> subprocess.Popen[str]:
    """Render the MuJoCo GIF in a child process with one GL backend (MuJoCo picks it once, at import).

    A child keeps a GL crash from taking the documentation build down, and renders while this process works on.
    """
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import gallery; "
        "print('GALLERY-STATS ' + json.dumps(gallery.mujoco_gif(Path(sys.argv[2]), int(sys.argv[3]))))"
    )
    env = {**os.environ, "MUJOCO_GL": backend, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", code, str(DOCS), str(path), str(frames)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_mujoco_gif(process: subprocess.Popen[str], timeout: float) -> dict[str, Any] | str:
    """The child's statistics, or why it made no GIF."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return f"rendering took more than {timeout:.0f} s"
    for line in output.splitlines():
        if line.startswith("GALLERY-STATS "):
            return dict(json.loads(line.removeprefix("GALLERY-STATS ")))
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"the renderer exited with status {process.returncode}"


def mujoco_section(page: Page, first: subprocess.Popen[str] | None, frames: int, timeout: float = 180) -> None:
    """The Hopper-v5 animation, from the child started early, or from the next backends; else a note."""
    page.add("## MuJoCo: the offline tasks' base envs")
    path, name = page.media / "Hopper-v5.gif", "Hopper-v5.gif"
    if first is None:
        page.note("No Hopper-v5 animation in this build: MuJoCo rendering was turned off (`mujoco=False`).")
        return
    reasons, result = [], None
    backends = mujoco_backends()
    for i, backend in enumerate(backends):
        process = first if i == 0 else start_mujoco_gif(path, frames, backend)
        outcome = wait_mujoco_gif(process, timeout)
        if isinstance(outcome, dict) and path.is_file():
            result = {"backend": backend, **outcome}
            break
        reasons.append(f"`MUJOCO_GL={backend}`: {outcome}")
    if result is None:
        page.note(
            f"No Hopper-v5 animation in this build: MuJoCo could not render headless here ({'; '.join(reasons)}). "
            "Without a display MuJoCo needs an OpenGL backend: `MUJOCO_GL=egl` (a GPU driver's or Mesa's EGL) or "
            "`MUJOCO_GL=osmesa` (Mesa's software renderer)."
        )
        return
    page.add(
        f"### Hopper-v5\n\n![Hopper-v5 under the expert and medium behaviour policies]({page.link(name)})\n\n"
        "The base env of the `hopper-*-v0` datasets. Left: the shipped SAC expert behind `hopper-expert-v0`; right: "
        "the medium policy behind `hopper-medium-v0` (both deterministic, episode seed 0; rendered with "
        f"`MUJOCO_GL={result['backend']}`). The animation shows the first {result['frames']} frames, one every "
        f"{result['every']} steps. Whole episodes: return {result['expert']['return']:.0f} over "
        f"{result['expert']['length']} steps (expert), {result['medium']['return']:.0f} over "
        f"{result['medium']['length']} steps (medium)."
    )


# --- text envs --------------------------------------------------------------------------------------------------------


def _fence(text: str) -> str:
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


def text_transcripts(page: Page) -> None:
    """One ToolSearch-v0 episode under the oracle and one TextWorld-v0 episode under its walkthrough, as text."""
    import gymnasium as gym

    import palaestra  # noqa: F401
    from palaestra.agents.text_baselines import OracleSearchPolicy

    page.add("## Text and tool-agent environments")
    try:
        env = gym.make("ToolSearch-v0", hops=2, max_doc_chars=160, render_mode="ansi")
        oracle = OracleSearchPolicy(env)
        observation, _ = env.reset(seed=0)
        done = False
        while not done:
            message, _ = oracle.predict(observation)
            observation, reward, terminated, truncated, info = env.step(message)
            done = terminated or truncated
        page.add(
            "### ToolSearch-v0\n\nOne two-hop question (`hops=2, max_doc_chars=160`, episode seed 0) played by the "
            "oracle, `palaestra.agents.text_baselines.OracleSearchPolicy`, which knows the gold search queries; "
            f'`env.render()` with `render_mode="ansi"`. Reward {reward:g}, exact match {info["em"]}, '
            f"{info['tool_calls']} searches.\n\n" + _fence(env.render() or "")
        )
    except (ImportError, gym.error.DependencyNotInstalled) as error:
        page.note(f"No ToolSearch-v0 transcript in this build: {_missing(error)} (install `palaestra[text]`).")
    try:
        env = gym.make("TextWorld-v0", request_infos=["policy_commands"], render_mode="ansi")
        observation, info = env.reset(seed=0)
        commands, reward, total = list(info.get("policy_commands") or []), 0.0, 0.0
        for command in commands:
            observation, reward, terminated, truncated, info = env.step(command)
            total += float(reward)
            if terminated or truncated:
                break
        page.add(
            "### TextWorld-v0\n\nOne generated game (`game_seeds=0`: 3 rooms, 5 objects, a quest of 3) played by "
            "its walkthrough: the `policy_commands` the env returns on request, a shortest winning command "
            f"sequence. Score {total:g} of {info.get('max_score')}, won: {info.get('won')}.\n\n" + _fence(env.render() or "")
        )
        env.close()
    except (ImportError, gym.error.DependencyNotInstalled) as error:
        page.note(f"No TextWorld-v0 transcript in this build: {_missing(error)} (install `palaestra[text]`).")


# --- dataset cards ----------------------------------------------------------------------------------------------------


def _load_dataset(env_id: str, task: str, kind: str, card_size: int) -> tuple[Any, dict[str, np.ndarray], str] | None:
    """The dataset a card shows: the full one if it is on disk, else (pendulum only) a small one generated now."""
    import gymnasium as gym

    from palaestra.envs.offline import dataset_id

    env = gym.make(env_id, generate=False, progress=False)
    try:
        return env, env.get_dataset(), f"the full dataset, `{dataset_id(task, kind)}`, found on disk"
    except (FileNotFoundError, RuntimeError):
        pass
    if task != "pendulum":
        return None
    if kind == "medium-replay":  # the shipped replay buffer: cheap to write out whole
        env = gym.make(env_id, progress=False)
        return env, env.get_dataset(), f"the full dataset, `{dataset_id(task, kind)}` (the shipped buffer)"
    env = gym.make(env_id, dataset_size=card_size, progress=False)
    what = (
        f"a {card_size:,}-transition sample generated for this card, `{dataset_id(task, kind, card_size)}`, from the "
        "same behaviour policies as the full dataset"
    )
    return env, env.get_dataset(), what


def _histogram(returns: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3.6, 1.8), dpi=90)
    axes.hist(returns, bins=min(30, max(5, len(returns) // 5)), color="#4c72b0")
    axes.set_xlabel("episode return", fontsize=8)
    axes.set_ylabel("episodes", fontsize=8)
    axes.set_title(title, fontsize=8)
    axes.tick_params(labelsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def dataset_cards(page: Page, card_size: int) -> None:
    """A card per offline dataset: pendulum's five (full if on disk, else small ones), MuJoCo's when on disk."""
    import palaestra  # noqa: F401
    from palaestra.envs.offline import KINDS, episode_returns, minari_root

    page.add(
        "## Offline datasets\n\n"
        "A card for each `<task>-<kind>-v0` dataset, computed from the data: transitions, episodes (a cut last "
        "episode counts), the distribution of episode returns and their D4RL-normalised score (x100, "
        "`env.get_normalized_score` on each episode's return, then the mean: the benchmarks' \"data\" column). "
        "To keep the documentation build short, pendulum's datasets are read in full when they are on disk, and "
        f"otherwise a {card_size:,}-transition sample is generated for the card (seconds; medium-replay is always "
        "the whole shipped buffer); the MuJoCo datasets (1M transitions, minutes to generate) get a card only "
        f"when they are already in the Minari folder (`{minari_root()}` here), e.g. after "
        "`palaestra collect --env hopper-medium-v0`. Each card says which data it shows."
    )
    absent = []
    histograms = True
    for task in ("pendulum", *MUJOCO_TASKS):
        for kind in KINDS:
            env_id = f"{task}-{kind}-v0"
            loaded = _load_dataset(env_id, task, kind, card_size)
            if loaded is None:
                absent.append(env_id)
                continue
            env, data, what = loaded
            ends = data["terminals"] | data["timeouts"]
            returns = np.asarray(episode_returns(data["rewards"], ends), dtype=float)
            scores = 100.0 * np.asarray(env.get_normalized_score(returns), dtype=float)
            quantiles = np.quantile(returns, [0.0, 0.25, 0.5, 0.75, 1.0])
            cut = "" if ends[-1] else " (the last one cut)"
            rows = [
                ("data", what),
                ("base env", f"`{env.task.env_id}`"),
                ("transitions", f"{len(data['rewards']):,}"),
                ("episodes", f"{len(returns):,}{cut}"),
                ("terminal transitions", f"{int(data['terminals'].sum()):,}"),
                ("episode return: min / 25% / median / 75% / max", " / ".join(f"{q:.1f}" for q in quantiles)),
                ("normalised score (x100), mean over episodes", f"{scores.mean():.1f}"),
            ]
            card = f"### {env_id}\n\n| | |\n|---|---|\n" + "\n".join(f"| {key} | {value} |" for key, value in rows)
            if histograms:
                name = f"card_{env_id}.png"
                try:
                    _histogram(returns, page.media / name, f"{env_id}: {len(returns)} episodes")
                    card += f"\n\n![episode returns of {env_id}]({page.link(name)})"
                except ImportError as error:
                    histograms = False
                    page.note(f"The cards have no return histograms in this build: {_missing(error)}.")
            page.add(card)
    if absent:
        page.add(
            "Not on disk here, so without a card: " + ", ".join(f"`{env_id}`" for env_id in absent) + ". "
            "`palaestra collect --env ID` generates one (a 1M-transition MuJoCo dataset takes minutes)."
        )


# --- claim tables -----------------------------------------------------------------------------------------------------


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Claims:
    """One claims page: sections rendered from results files, with the plots they name copied into media/."""

    def __init__(self, results: Path, media: Path, media_link: str) -> None:
        self.results, self.page = results, Page(media, media_link)

    def section(self, title: str, names: Iterable[str], render: Callable[..., str], rerun: str) -> None:
        """A ``###`` section rendered from the results files ``names`` (JSON stems), or a note if one is missing."""
        names = list(names)
        payloads = [_load(self.results, name) for name in names]
        files = ", ".join(f"`benchmarks/results/{name}.json`" for name in names)
        if any(payload is None for payload in payloads):
            missing = [f"`{name}.json`" for name, payload in zip(names, payloads, strict=True) if payload is None]
            self.page.add(f"### {title}\n")
            self.page.note(f"Not measured yet: no {', '.join(missing)} in `benchmarks/results/`. Run `{rerun}`.")
            return
        try:
            body = render(*payloads)
        except Exception as error:  # one unreadable file must not hide the other tables
            traceback.print_exc()
            self.page.add(f"### {title}\n")
            self.page.note(f"{files} could not be rendered ({type(error).__name__}: {error}); rerun `{rerun}`.")
            return
        machine = payloads[0].get("machine", {})  # type: ignore[union-attr]
        source = f"Rendered from {files}"
        if machine:
            source += f" (measured on {machine.get('cpu', 'an unknown CPU')}, {str(machine.get('date', ''))[:10]})"
        self.page.add(f"### {title}\n\n{self.images(body)}\n\n{source}.")

    def images(self, body: str) -> str:
        """Point ``results/*.png`` image links at media/ and show the plots the text only names."""

        def copy(name: str) -> str:
            shutil.copyfile(self.results / name, self.page.media / name)
            return self.page.link(name)

        def relink(match: re.Match[str]) -> str:
            name = match.group(2)
            return f"]({copy(name)})" if (self.results / name).is_file() else match.group(0)

        body = re.sub(r"\]\((benchmarks/)?results/([^)]+\.png)\)", relink, body)
        shown = []
        for pattern in re.findall(r"`(?:benchmarks/)?results/([^`]+\.png)`", body):
            for path in sorted(self.results.glob(pattern)):
                shown.append(f"![{path.stem}]({copy(path.name)})")
        return body + ("\n\n" + " ".join(shown) if shown else "")


def a2pr_markdown(payload: dict[str, Any]) -> str:
    """A2PR vs TD3+BC and IQL from an ``a2pr_vs_td3bc*`` results file (read directly: that script renders at its end)."""
    from benchmarks.harness import compare_means, markdown_table
    from palaestra.evaluation import bootstrap_ci

    a, algos = payload["args"], ("TD3+BC", "IQL", "A2PR")
    task = a.get("task", "pendulum")
    reruns = payload.get("reruns", {})
    rows, verdicts = [], []
    for label, runs in payload["results"].items():
        if not all(len(runs.get(algo, [])) == len(a["seeds"]) for algo in algos):
            continue
        finals = {algo: np.array([run["final_score"] for run in runs[algo]]) for algo in algos}
        speed = {algo: np.mean([run["steps_per_second"] for run in runs[algo]]) for algo in algos}
        for algo in algos:
            low, high = bootstrap_ci(finals[algo])
            # a retrained agent's runs and TD3+BC's ran at different times, under other loads: no ratio
            ratio = "n/a" if (algo in reruns) != ("TD3+BC" in reruns) else f"{speed[algo] / speed['TD3+BC']:.2f}"
            mean = finals[algo].mean()
            rows.append([label, algo, len(finals[algo]), f"{mean:.1f}", f"[{low:.1f}, {high:.1f}]", ratio])
        versus = {base: compare_means(finals["A2PR"], finals[base]) for base in ("TD3+BC", "IQL")}
        verdicts.append(f"{label}: A2PR vs TD3+BC {versus['TD3+BC']}, vs IQL {versus['IQL']}")
    if not rows:
        return "No dataset has every agent's runs finished yet."
    stem = "a2pr_vs_td3bc" if task == "pendulum" else f"a2pr_vs_td3bc_{task}"
    note = (
        f"`{task}` datasets; {a['steps']} gradient steps, batch 256, seeds {a['seeds']}; final score = mean of the last "
        f"two evaluations ({a['episodes']} episodes each, every {a['eval_every']} steps), mean over seeds with a "
        f"bootstrap 95% CI. Every network {a['width']}-{a['width']}. The mixed dataset has {a['mixed_size']} "
        f"transitions. 1 torch thread. Plots: `results/{stem}_*.png`."
    )
    if reruns:
        when = "; ".join(f"{algo} on {date[:10]} ({why})" for algo, (date, why) in sorted(reruns.items()))
        note += (
            f" Retrained after a code change: {when}; the other agents' runs are older, and a speed ratio between "
            "runs made at different times (n/a) is not shown."
        )
    header = ["dataset", "agent", "seeds", "final normalised score", "95% CI", "grad steps/s vs TD3+BC"]
    return (
        f"{markdown_table(header, rows)}\n\nFinding: {'; '.join(verdicts)}. A normalised score of 0 is a uniform "
        f"random policy.\n\n{note}"
    )


def write_claims(claims_dir: Path, results: Path, media: Path, media_link: str) -> dict[str, list[str]]:
    """The claims pages (:data:`CLAIM_PAGES`); returns each page's notes (sections not rendered)."""
    from benchmarks import (
        cdsa_risk,
        llm_agents,
        offline_scores,
        offline_scores_summary,
        online_drrpo,
        online_props,
        online_sqirl,
        pgd_downstream,
        pgd_dynamics,
    )

    def scores(name: str) -> Callable[[dict[str, Any]], str]:
        return lambda payload: offline_scores.render_markdown(payload["args"], payload, name)

    def mujoco_summary(*payloads: dict[str, Any]) -> str:
        return (
            "One row per dataset: the last evaluation's normalised score, mean over seeds [95% bootstrap CI] / the "
            "mean of each seed's last 5 evaluations; the last row is the interquartile mean of every run's last "
            "evaluation with rliable's stratified-bootstrap 95% CI. Budgets and settings: the per-task tables below.\n\n"
            + offline_scores_summary.summary_table(list(payloads), ["medium", "medium-replay"])
        )

    pages: dict[str, list[tuple[str, list[str], Callable[..., str], str]]] = {
        "props": [
            ("PROPS on CartPole-v1 and RobustCartPole-v0", ["online_props"], online_props.render_markdown,
             "python -m benchmarks.online_props"),
            ("PROPS on Swimmer-v5", ["online_props_swimmer"],
             lambda p: online_props.render_markdown(p, "online_props_swimmer"),
             "python -m benchmarks.online_props --envs Swimmer-v5 --name online_props_swimmer"),
        ],
        "drrpo": [
            ("DR-RPO", ["online_drrpo"], online_drrpo.render_markdown, "python -m benchmarks.online_drrpo"),
        ],
        "sqirl": [
            ("SQIRL", ["online_sqirl"], online_sqirl.render_markdown, "python -m benchmarks.online_sqirl"),
        ],
        "a2pr": [
            ("A2PR vs TD3+BC and IQL on suboptimal pendulum data", ["a2pr_vs_td3bc"], a2pr_markdown,
             "python -m benchmarks.a2pr_vs_td3bc"),
            ("A2PR vs TD3+BC and IQL on halfcheetah", ["a2pr_vs_td3bc_halfcheetah"], a2pr_markdown,
             "python -m benchmarks.a2pr_vs_td3bc --task halfcheetah"),
            ("A2PR vs TD3+BC and IQL on hopper", ["a2pr_vs_td3bc_hopper"], a2pr_markdown,
             "python -m benchmarks.a2pr_vs_td3bc --task hopper"),
        ],
        "cdsa": [
            ("CDSA on frozen offline policies: return and risk", ["cdsa_risk"], cdsa_risk.render_markdown,
             "python -m benchmarks.cdsa_risk"),
        ],
        "pgd": [
            ("Policy-guided diffusion: dynamics error and guidance", ["pgd_dynamics"], pgd_dynamics.render_markdown,
             "python -m benchmarks.pgd_dynamics"),
            ("Policy-guided diffusion: downstream scores", ["pgd_downstream"], pgd_downstream.render_markdown,
             "python -m benchmarks.pgd_downstream"),
        ],
        "llm": [
            (f"{hops}-hop questions", [f"llm_agents_{hops}hop"],
             lambda p, n=f"llm_agents_{hops}hop": llm_agents.render_markdown(p, n),
             f"python -m benchmarks.llm_agents --hops {hops}")
            for hops in (1, 2, 3)
        ],
        "offline_scores": [
            ("TD3+BC and IQL on the MuJoCo datasets", [f"offline_scores_{task}" for task in MUJOCO_TASKS],
             mujoco_summary, "python -m benchmarks.offline_scores --full"),
            ("Scores on pendulum", ["offline_scores"], scores("offline_scores"), "python -m benchmarks.offline_scores"),
            *(
                (f"Scores on {task}", [f"offline_scores_{task}"], scores(f"offline_scores_{task}"),
                 f"python -m benchmarks.offline_scores --full --tasks {task} --name offline_scores_{task}")
                for task in MUJOCO_TASKS
            ),
            ("IQL on halfcheetah-medium-replay, 300k steps", ["offline_scores_halfcheetah_iql_300k"],
             scores("offline_scores_halfcheetah_iql_300k"),
             "python -m benchmarks.offline_scores --name offline_scores_halfcheetah_iql_300k"),
        ],
    }  # fmt: skip
    assert set(pages) == set(CLAIM_PAGES), sorted(pages)
    notes = {}
    for page_name, sections in pages.items():
        claims = Claims(results, media, media_link)
        for title, names, render, rerun in sections:
            claims.section(title, names, render, rerun)
        (claims_dir / f"{page_name}.md").write_text(claims.page.text())
        notes[page_name] = claims.page.notes
    return notes


# --- the whole output -------------------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace_owned(staging: Path, out_dir: Path) -> None:
    """Move the staged pages into ``out_dir``: one rename if it is new, else entry by entry (others kept).

    The previous entries are moved aside first and put back if a move fails.
    """
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    backup = Path(tempfile.mkdtemp(prefix=".gallery-old-", dir=out_dir.parent))
    try:
        for name in OWNED:
            if (out_dir / name).exists():
                (out_dir / name).rename(backup / name)
        for name in OWNED:
            (staging / name).rename(out_dir / name)
    except OSError:
        for name in OWNED:
            if (backup / name).exists():
                _remove(out_dir / name)
                (backup / name).rename(out_dir / name)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def main(
    out_dir: Path = DEFAULT_OUT,
    *,
    frames: int = 150,
    card_size: int = CARD_SIZE,
    quick: bool = False,
    results_dir: Path = RESULTS_DIR,
    mujoco: bool = True,
) -> None:
    """Write ``gallery.md``, ``claims/*.md`` and ``media/`` into ``out_dir`` (see the module docstring).

    Args:
        out_dir: Output folder; other entries in it are left alone.
        frames: Frames per animation (at most).
        card_size: Transitions of the small pendulum datasets generated for cards whose full dataset is not on disk.
        quick: A fast run for tests: 12 frames per animation and 2,000-transition card datasets.
        results_dir: Where the benchmarks' JSON results and plots are read.
        mujoco: Render the Hopper-v5 animation (in a child process); ``False`` leaves a note instead.
    """
    started_at = time.perf_counter()
    if quick:
        frames, card_size = min(frames, 12), min(card_size, 2_000)
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-new-", dir=out_dir.parent))
    try:
        media, claims = staging / "media", staging / "claims"
        media.mkdir()
        claims.mkdir()
        page = Page(media, "media")
        page.add(
            "Generated by `docs/gallery.py` from the installed code and `benchmarks/results/`; a rebuild of the "
            "documentation regenerates it."
        )
        hopper = start_mujoco_gif(media / "Hopper-v5.gif", frames, mujoco_backends()[0]) if mujoco else None
        try:
            try:
                control_gifs(page, frames)
            except ImportError as error:
                page.note(f"No control animations in this build: {_missing(error)} (Pillow writes the GIFs).")
            mujoco_section(page, hopper, frames)
        finally:
            if hopper is not None and hopper.poll() is None:
                hopper.kill()
                hopper.communicate()
        text_transcripts(page)
        dataset_cards(page, card_size)
        (staging / "gallery.md").write_text(page.text())
        write_claims(claims, results_dir, media, "../media")
        _replace_owned(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"docs/gallery.py: wrote {out_dir} in {time.perf_counter() - started_at:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
