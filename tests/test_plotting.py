import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from palaestra import cli, plotting
from palaestra.evaluation import bootstrap_ci
from palaestra.plotting import LOG_ROWS, SFT_LOG_ROWS, PlotError, PlotResult, bootstrap_band, plot_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PPO = ["--algo", "ppo", "--env", "CartPole-v1", "--timesteps", "256", "--no-progress-bar"]
SMALL_PPO = ["n_steps=64", "batch_size=64"]


def metadata(**overrides):
    base = {
        "algo": "ppo",
        "env_id": "CartPole-v1",
        "env_kwargs": {},
        "hyperparams": {},
        "timesteps": 100,
        "seed": 0,
        "n_envs": 1,
        "palaestra_version": "0.1.0",
    }
    return {**base, **overrides}


def write_run(directory: Path, rows: list[dict[str, float]], **overrides) -> Path:
    """A hand-written ``palaestra train`` directory: SB3's CSV layout (header of every key, blanks where unlogged)."""
    directory.mkdir(parents=True)
    (directory / cli.METADATA_FILE).write_text(json.dumps(metadata(**overrides)))
    header = list(dict.fromkeys(key for row in rows for key in row))
    with (directory / "progress.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return directory


def sb3_rows(x, y):
    return [
        {"time/iterations": i + 1, "time/total_timesteps": s, "rollout/ep_rew_mean": v}
        for i, (s, v) in enumerate(zip(x, y, strict=True))
    ]


def read_column(run: Path, key: str) -> list[float]:
    with (run / "progress.csv").open() as file:
        return [float(row[key]) for row in csv.DictReader(file) if row[key]]


def is_png(path: Path) -> bool:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return path.read_bytes()[:8] == PNG_SIGNATURE and image.ndim == 3 and image.shape[0] > 100


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures plot_runs saves, to look at what was drawn."""
    figures = []
    save = plotting._save_png

    def keep(figure, path):
        figures.append(figure)
        save(figure, path)

    monkeypatch.setattr(plotting, "_save_png", keep)
    return figures


@pytest.fixture(scope="module")
def ppo_runs(tmp_path_factory):
    """Real runs: PPO on CartPole seeds 0 and 1, and another config (n_epochs=2) seed 0."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, seed, extra in (("s0", 0, []), ("s1", 1, []), ("epochs2", 0, ["n_epochs=2"])):
        runs[name] = root / name
        argv = ["train", *PPO, "--seed", str(seed), "--out", str(runs[name]), "--hyperparams", *SMALL_PPO, *extra]
        assert cli.main(argv) == 0
    return runs


def test_two_seeds_of_a_real_sb3_run_make_one_curve_with_a_band(ppo_runs, tmp_path, monkeypatch, drawn):
    monkeypatch.chdir(tmp_path)
    result = plot_runs([ppo_runs["s0"], ppo_runs["s1"]])
    assert isinstance(result, PlotResult)
    assert result.path == Path("learning_curves.png") and is_png(tmp_path / "learning_curves.png")
    (curve,) = result.curves
    assert curve.key == "rollout/ep_rew_mean" and result.default_key
    assert curve.x_column == "time/total_timesteps" and curve.n_runs == 2 and result.n_runs == 2
    assert curve.label == "ppo on CartPole-v1"
    np.testing.assert_array_equal(curve.x, [64, 128, 192, 256])
    seeds = np.array([read_column(ppo_runs[s], "rollout/ep_rew_mean") for s in ("s0", "s1")])
    np.testing.assert_allclose(curve.mean, seeds.mean(axis=0))
    assert curve.ci_low is not None and curve.ci_high is not None
    np.testing.assert_allclose(curve.ci_low, [bootstrap_ci(seeds[:, t])[0] for t in range(4)])
    np.testing.assert_allclose(curve.ci_high, [bootstrap_ci(seeds[:, t])[1] for t in range(4)])
    assert result.summary() == (
        "wrote 1 curve (2 runs) of rollout/ep_rew_mean (the default key; pass --key to plot another) to learning_curves.png"
    )
    (axis,) = drawn[0].axes
    assert len(axis.lines) == 1 and len(axis.collections) == 1  # the mean line and its band
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["ppo on CartPole-v1 (n=2, 95% CI)"]
    assert axis.get_xlabel() == "env steps (time/total_timesteps)" and axis.get_ylabel() == "rollout/ep_rew_mean"


def test_two_configs_make_two_curves_labelled_by_what_differs(ppo_runs, tmp_path, drawn):
    out = tmp_path / "curves.png"
    result = plot_runs([ppo_runs["s0"], ppo_runs["epochs2"], ppo_runs["s1"]], key="rollout/ep_rew_mean", out=out)
    assert result.path == out and is_png(out) and not result.default_key
    assert [c.runs for c in result.curves] == [(ppo_runs["s0"], ppo_runs["s1"]), (ppo_runs["epochs2"],)]
    first, second = result.curves
    assert "n_epochs" not in first.label and second.label == "ppo on CartPole-v1 n_epochs=2"
    assert second.ci_low is None and second.ci_high is None  # one seed: its line, no band
    np.testing.assert_allclose(second.mean, read_column(ppo_runs["epochs2"], "rollout/ep_rew_mean"))
    assert result.summary() == f"wrote 2 curves (3 runs) of rollout/ep_rew_mean to {out}"
    (axis,) = drawn[0].axes
    assert len(axis.lines) == 2 and len(axis.collections) == 1
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["ppo on CartPole-v1 (n=2, 95% CI)", "ppo on CartPole-v1 n_epochs=2 (n=1, no band)"]


def test_one_run_goes_next_to_its_logs_by_default(ppo_runs):
    result = plot_runs([str(ppo_runs["s1"])])
    try:
        assert result.path == ppo_runs["s1"] / "learning_curve.png" and is_png(result.path)
        assert result.curves[0].n_runs == 1 and result.curves[0].ci_low is None
    finally:
        result.path.unlink()


def test_a_directory_given_twice_counts_once(tmp_path):
    run = write_run(tmp_path / "a", sb3_rows([10, 20], [1.0, 2.0]))
    result = plot_runs([run, str(run)], out=tmp_path / "p.png")
    assert result.n_runs == 1


def test_the_band_is_scipys_percentile_bootstrap_of_the_mean_over_seeds(tmp_path):
    values = np.array([[1.0, 5.0, 2.0, 9.0], [2.0, 3.0, 8.0, 9.0], [4.0, 4.0, 3.0, 9.0], [0.0, 7.0, 5.0, 9.0]])
    runs = [write_run(tmp_path / f"s{i}", sb3_rows([100, 200, 300, 400], row), seed=i) for i, row in enumerate(values)]
    (curve,) = plot_runs(runs, out=tmp_path / "band.png").curves
    np.testing.assert_allclose(curve.mean, [1.75, 4.75, 4.5, 9.0])
    for t in range(3):
        reference = stats.bootstrap(
            (values[:, t],), np.mean, confidence_level=0.95, n_resamples=10_000, method="percentile", rng=0
        ).confidence_interval
        assert curve.ci_low[t] == pytest.approx(reference.low) and curve.ci_high[t] == pytest.approx(reference.high)
        assert curve.ci_low[t] < curve.mean[t] < curve.ci_high[t]
    assert curve.ci_low[3] == curve.ci_high[3] == 9.0  # identical seeds: a band of zero width
    low, high = bootstrap_band(values, confidence_level=0.5)
    assert np.all(high - low < curve.ci_high - curve.ci_low + 1e-12) and bootstrap_band(values[:1]) is None


def test_seeds_logged_at_different_steps_are_interpolated_inside_their_common_range(tmp_path):
    a = write_run(tmp_path / "a", sb3_rows([0, 10, 20, 30], [0.0, 1.0, 2.0, 3.0]), seed=0)
    b = write_run(tmp_path / "b", sb3_rows([5, 15, 25], [10.0, 20.0, 30.0]), seed=1)
    (curve,) = plot_runs([a, b], out=tmp_path / "p.png").curves
    np.testing.assert_array_equal(curve.x, [5, 10, 15, 20, 25])
    np.testing.assert_allclose(curve.mean, np.mean([[0.5, 1.0, 1.5, 2.0, 2.5], [10.0, 15.0, 20.0, 25.0, 30.0]], axis=0))
    c = write_run(tmp_path / "c", sb3_rows([40, 50], [1.0, 2.0]), seed=2)
    with pytest.raises(PlotError, match="do not overlap"):
        plot_runs([a, c], out=tmp_path / "p.png")


def test_long_curves_are_thinned_to_at_most_1000_points(tmp_path):
    x = np.arange(1, 2501) * 4
    runs = [write_run(tmp_path / f"s{i}", sb3_rows(x, np.sin(x / 100.0) + i), seed=i) for i in range(2)]
    (curve,) = plot_runs(runs, out=tmp_path / "p.png").curves
    assert curve.x.size == plotting.MAX_POINTS and curve.x[0] == 4 and curve.x[-1] == 10_000
    np.testing.assert_allclose(curve.mean, np.sin(curve.x / 100.0) + 0.5)


def test_rows_where_a_seed_left_the_key_blank_are_dropped(tmp_path):
    rows0 = [{"time/total_timesteps": 10, "rollout/ep_rew_mean": ""}, *sb3_rows([20, 30], [2.0, 3.0])]
    rows1 = [*sb3_rows([10, 20], [1.0, 4.0]), {"time/total_timesteps": 30, "rollout/ep_rew_mean": ""}]
    runs = [write_run(tmp_path / "a", rows0, seed=0), write_run(tmp_path / "b", rows1, seed=1)]
    (curve,) = plot_runs(runs, out=tmp_path / "p.png").curves
    np.testing.assert_array_equal(curve.x, [20])
    np.testing.assert_allclose(curve.mean, [3.0])


def offline_rows(scores):
    """TD3+BC/IQL layout: losses and gradient steps every log_interval, the evaluation every other dump."""
    rows = []
    for i, score in enumerate(scores):
        row = {"train/actor_loss": 3.0 - i, "train/critic_loss": 50.0, "time/gradient_steps": 10 * (i + 1)}
        row.update({"time/steps_per_second": 60.0, "eval/normalized_score": "", "eval/mean_return": ""})
        if score is not None:
            row.update({"eval/normalized_score": score, "eval/mean_return": -1000.0 + score})
        rows.append(row)
    return rows


def test_offline_runs_plot_the_normalised_score_against_gradient_steps(tmp_path, drawn):
    offline = {"algo": "td3bc", "env_id": "pendulum-medium-v0", "env_kwargs": {"dataset_size": 400}}
    a = write_run(tmp_path / "a", offline_rows([None, 7.0, None, 9.0]), **offline, seed=0)
    b = write_run(tmp_path / "b", offline_rows([None, 5.0, None, 11.0]), **offline, seed=1)
    result = plot_runs([a, b], out=tmp_path / "p.png")
    (curve,) = result.curves
    assert curve.key == "eval/normalized_score" and curve.x_column == "time/gradient_steps"
    np.testing.assert_array_equal(curve.x, [20, 40])
    np.testing.assert_allclose(curve.mean, [6.0, 10.0])
    assert drawn[0].axes[0].get_xlabel() == "gradient steps (time/gradient_steps)"
    (loss,) = plot_runs([a, b], key="train/actor_loss", out=tmp_path / "p.png").curves
    np.testing.assert_array_equal(loss.x, [10, 20, 30, 40])
    np.testing.assert_allclose(loss.mean, [3.0, 2.0, 1.0, 0.0])


def test_the_score_is_preferred_over_the_return_then_the_rollout_return(tmp_path):
    offline = write_run(tmp_path / "o", offline_rows([1.0]))
    assert plot_runs([offline], out=tmp_path / "p.png").curves[0].key == "eval/normalized_score"
    rows = [{"time/total_timesteps": 5, "eval/mean_return": 1.0, "rollout/ep_rew_mean": 2.0}]
    assert plot_runs([write_run(tmp_path / "r", rows)], out=tmp_path / "p.png").curves[0].key == "eval/mean_return"
    other = [{"time/iterations": 1, "train/loss": 0.5, "custom/episode_return": 3.0}]
    (curve,) = plot_runs([write_run(tmp_path / "c", other)], out=tmp_path / "p.png").curves
    assert curve.key == "custom/episode_return" and curve.x_column == "time/iterations"
    with pytest.raises(
        PlotError, match=r"no reward-like key to plot by default; pass --key, one of: time/iterations, train/loss"
    ):
        plot_runs([write_run(tmp_path / "l", [{"time/iterations": 1, "train/loss": 0.5}])], out=tmp_path / "p.png")


def llm_rows(ems, sft_steps=2):
    """MultiTurnAgent layout: SFT rows (sft/ keys only), then one row per RL update, eval keys every 2nd update."""
    rows = [{"sft/loss": 3.0 - i, "sft/token_prob": 0.1 * i} for i in range(sft_steps)]
    for update, em in enumerate(ems, start=1):
        row = {"train/loss": 0.1 * update, "rollout/ep_rew_mean": 0.25 * update, "time/step_s": 0.05}
        row["eval/dev_em"] = em if update % 2 == 0 else ""
        rows.append(row)
    return rows


def test_llm_runs_without_a_step_column_are_indexed_by_rl_update(tmp_path):
    llm = {"algo": "grpo", "env_id": "ToolSearch-v0", "hyperparams": {"model": "tiny"}}
    a = write_run(tmp_path / "a", llm_rows([0, 0.2, 0, 0.4]), **llm, seed=0)
    b = write_run(tmp_path / "b", llm_rows([0, 0.4, 0, 0.6]), **llm, seed=1)
    (curve,) = plot_runs([a, b], out=tmp_path / "p.png").curves
    assert curve.key == "eval/dev_em" and curve.x_column == LOG_ROWS
    np.testing.assert_array_equal(curve.x, [2, 4])  # the RL updates at which it evaluated, SFT rows not counted
    np.testing.assert_allclose(curve.mean, [0.3, 0.5])
    (rollout,) = plot_runs([a, b], key="rollout/ep_rew_mean", out=tmp_path / "p.png").curves
    np.testing.assert_array_equal(rollout.x, [1, 2, 3, 4])
    np.testing.assert_allclose(rollout.mean, [0.25, 0.5, 0.75, 1.0])
    (sft,) = plot_runs([a, b], key="sft/loss", out=tmp_path / "p.png").curves
    assert sft.x_column == SFT_LOG_ROWS
    np.testing.assert_array_equal(sft.x, [1, 2])
    np.testing.assert_allclose(sft.mean, [3.0, 2.0])


def test_groups_with_different_default_keys_say_which_key_each_curve_shows(tmp_path, drawn):
    sb3 = write_run(tmp_path / "sb3", sb3_rows([10, 20], [1.0, 2.0]))
    offline = write_run(tmp_path / "off", offline_rows([1.0, 2.0]), algo="iql", env_id="pendulum-medium-v0")
    result = plot_runs([sb3, offline], out=tmp_path / "p.png")
    assert result.keys == ("rollout/ep_rew_mean", "eval/normalized_score")
    assert [c.label for c in result.curves] == [
        "ppo on CartPole-v1 [rollout/ep_rew_mean]",
        "iql on pendulum-medium-v0 [eval/normalized_score]",
    ]
    assert drawn[0].axes[0].get_xlabel() == "env steps / gradient steps"
    assert "of rollout/ep_rew_mean, eval/normalized_score (the default key" in result.summary()


def test_runs_that_only_differ_in_seed_and_progress_share_a_curve(tmp_path):
    a = write_run(tmp_path / "a", sb3_rows([10, 20], [1.0, 2.0]), seed=0, timesteps_trained=20)
    b = write_run(tmp_path / "b", sb3_rows([10], [3.0]), seed=1, timesteps_trained=10, interrupted=True)
    c = write_run(tmp_path / "c", sb3_rows([10, 20], [1.0, 2.0]), seed=0, env_kwargs={"length": 2.0})
    result = plot_runs([a, b, c], out=tmp_path / "p.png")
    assert [c.n_runs for c in result.curves] == [2, 1]
    np.testing.assert_array_equal(result.curves[0].x, [10])  # not past the interrupted seed's last log
    assert result.curves[1].label == "ppo on CartPole-v1 length=2.0"


def test_missing_or_wrong_run_directories_are_named(tmp_path):
    with pytest.raises(PlotError, match=r"run directory '.*nowhere' does not exist"):
        plot_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlotError, match=r"'.*empty' has no palaestra.json; expected a `palaestra train --out` directory"):
        plot_runs([tmp_path / "empty"])
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "palaestra.json").write_text(json.dumps(metadata()))
    with pytest.raises(PlotError, match=r"'.*meta' has no progress.csv; expected a `palaestra train --out` directory"):
        plot_runs([tmp_path / "meta"])
    (tmp_path / "meta" / "progress.csv").write_text("")
    with pytest.raises(PlotError, match=r"progress.csv' is empty: the run stopped before its first log entry"):
        plot_runs([tmp_path / "meta"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PlotError, match="is not a directory"):
        plot_runs([tmp_path / "file.txt"])
    with pytest.raises(PlotError, match="at least one run directory"):
        plot_runs([])
    assert issubclass(PlotError, ValueError)


def test_a_key_no_run_logs_lists_the_available_keys(tmp_path):
    run = write_run(tmp_path / "a", sb3_rows([10, 20], [1.0, 2.0]))
    with pytest.raises(
        PlotError,
        match=r"no run logs 'eval/mean_return'; available keys: time/iterations, time/total_timesteps, rollout/ep_rew_mean",
    ):
        plot_runs([run], key="eval/mean_return", out=tmp_path / "p.png")
    other = write_run(tmp_path / "b", offline_rows([1.0]), seed=1)
    with pytest.raises(PlotError, match=r"'.*b' does not log 'rollout/ep_rew_mean'; leave it out or choose a key every run"):
        plot_runs([run, other], key="rollout/ep_rew_mean", out=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_out_must_be_a_png_in_an_existing_folder(tmp_path):
    run = write_run(tmp_path / "a", sb3_rows([10, 20], [1.0, 2.0]))
    with pytest.raises(PlotError, match=r"--out must name a .png file, got '.*curve.jpg'"):
        plot_runs([run], out=tmp_path / "curve.jpg")
    with pytest.raises(PlotError, match=r"the folder of --out '.*missing/curve.png' does not exist"):
        plot_runs([run], out=tmp_path / "missing" / "curve.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(PlotError, match="is a directory"):
        plot_runs([run], out=tmp_path / "dir.png")
    assert is_png(plot_runs([run], out=tmp_path / "UPPER.PNG").path)


def test_a_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    run = write_run(tmp_path / "a", sb3_rows([10, 20], [1.0, 2.0]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "curve.png").write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_SIGNATURE)  # half a PNG, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="No space left"):
        plot_runs([run], out=out / "curve.png")
    assert [p.name for p in out.iterdir()] == ["curve.png"] and (out / "curve.png").read_bytes() == b"old"


def test_importing_the_module_imports_neither_torch_nor_matplotlib():
    code = "import sys, palaestra.plotting; print(sorted({'torch', 'matplotlib', 'scipy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_benchmarks_plot_through_the_same_code(tmp_path):
    from benchmarks.plotting import plot_learning_curves

    assert plot_learning_curves is plotting.plot_learning_curves
    path = plot_learning_curves({"one seed": (np.arange(3), np.ones((1, 3)))}, tmp_path / "sub" / "c.png")
    assert is_png(path)
