"""docs/gallery.py: the generated gallery, dataset cards and claim tables, on small settings."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load_gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "docs" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gallery = _load_gallery()


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """Card datasets are generated into a temporary Minari folder, not the user's."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _images(page: Path) -> list[Path]:
    return [(page.parent / link).resolve() for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())]


@pytest.mark.slow
def test_main_writes_the_gallery_the_claim_tables_and_their_media(tmp_path, minari_root):
    out = tmp_path / "generated"
    gallery.main(out, quick=True)

    page = (out / "gallery.md").read_text()
    for heading in ("RobustCartPole-v0", "RobustPendulum-v0", "ToolSearch-v0", "TextWorld-v0", "pendulum-medium-v0"):
        assert f"### {heading}" in page
    from PIL import Image

    gifs = sorted((out / "media").glob("*.gif"))
    assert {"RobustCartPole-v0.gif", "RobustPendulum-v0.gif"} <= {gif.name for gif in gifs}
    for gif in gifs:
        with Image.open(gif) as image:
            assert image.format == "GIF" and image.n_frames > 1
    assert "Hopper-v5.gif" in page or "No Hopper-v5 animation" in page  # rendered, or a note on the GL backend
    assert "<answer>" in page and "> " in page  # both transcripts
    # every pendulum kind has a card with its transitions and normalised score; MuJoCo data is not on disk here
    assert page.count("| normalised score (x100), mean over episodes |") == 5
    assert "`hopper-medium-v0`" in page

    assert {path.stem for path in (out / "claims").glob("*.md")} == set(gallery.CLAIM_PAGES)
    for name in gallery.CLAIM_PAGES:
        claims = out / "claims" / f"{name}.md"
        assert claims.is_file() and "Not measured yet" not in claims.read_text()
        for image in _images(claims):
            assert image.is_file() and image.parent == (out / "media").resolve()
    for image in _images(out / "gallery.md"):
        assert image.is_file()

    # figures of the JSON appear in the tables
    hopper = json.loads((RESULTS / "offline_scores_hopper.json").read_text())
    scores = (out / "claims" / "offline_scores.md").read_text()
    assert f"| hopper-medium-v0 | {hopper['data_scores']['hopper-medium-v0']:.1f} |" in scores
    iql = [r for r in hopper["runs"] if r["env_id"] == "hopper-medium-replay-v0" and r["algo"] == "iql"]
    best = max(entry["normalized_score"] for run in iql for entry in run["eval_history"])
    assert f"| {best:.1f} |" in scores
    a2pr = json.loads((RESULTS / "a2pr_vs_td3bc_hopper.json").read_text())
    assert f"{a2pr['args']['steps']} gradient steps" in (out / "claims" / "a2pr.md").read_text()
    llm = json.loads((RESULTS / "llm_agents_2hop.json").read_text())
    assert f"| grpo | {llm['summary']['grpo']['final_train_em']:.3g} |" in (out / "claims" / "llm.md").read_text()
    props = json.loads((RESULTS / "online_props.json").read_text())
    mean, low, high = props["summary"]["CartPole-v1"]["PROPS"]["final_return"]
    assert f"{mean:.3g} [{low:.3g}, {high:.3g}]" in (out / "claims" / "props.md").read_text()


def test_missing_optional_packages_and_results_degrade_to_notes(tmp_path, minari_root, monkeypatch):
    # a None entry makes `import name` raise ImportError (Minari itself needs PIL.Image, so only ImageDraw goes)
    for name in ("PIL.ImageDraw", "matplotlib", "textworld"):
        monkeypatch.setitem(sys.modules, name, None)
    import PIL

    monkeypatch.delattr(PIL, "ImageDraw", raising=False)  # `from PIL import ImageDraw` reads the attribute first
    results = tmp_path / "results"
    results.mkdir()
    (results / "online_sqirl.json").write_text("{}")  # unreadable: no 'config'
    out = tmp_path / "generated"
    gallery.main(out, quick=True, card_size=400, results_dir=results, mujoco=False)

    page = (out / "gallery.md").read_text()
    assert "No control animations in this build: `PIL.ImageDraw` is not installed (Pillow writes the GIFs)" in page
    assert "No TextWorld-v0 transcript in this build" in page
    assert "no return histograms in this build: `matplotlib` is not installed" in page
    assert "No Hopper-v5 animation in this build" in page
    assert "### ToolSearch-v0" in page and "| transitions | 400 |" in page
    assert not list((out / "media").glob("*.gif"))
    assert "Not measured yet: no `online_props.json`" in (out / "claims" / "props.md").read_text()
    sqirl = (out / "claims" / "sqirl.md").read_text()
    assert "`benchmarks/results/online_sqirl.json` could not be rendered (KeyError" in sqirl


def test_a_failed_generation_leaves_the_previous_pages(tmp_path, monkeypatch):
    out = tmp_path / "generated"
    (out / "claims").mkdir(parents=True)
    (out / "gallery.md").write_text("previous gallery\n")
    (out / "api").mkdir()  # autosummary's stubs live beside the gallery: never touched
    (out / "api" / "stub.rst").write_text("stub\n")

    def fail(*args, **kwargs):
        raise RuntimeError("broken renderer")

    monkeypatch.setattr(gallery, "write_claims", fail)
    monkeypatch.setattr(gallery, "control_gifs", lambda page, frames: None)
    monkeypatch.setattr(gallery, "text_transcripts", lambda page: None)
    monkeypatch.setattr(gallery, "dataset_cards", lambda page, card_size: None)
    with pytest.raises(RuntimeError, match="broken renderer"):
        gallery.main(out, quick=True, mujoco=False)
    assert (out / "gallery.md").read_text() == "previous gallery\n"
    assert [p.name for p in tmp_path.iterdir()] == ["generated"]  # no staging folder left

    monkeypatch.setattr(gallery, "write_claims", lambda claims, *args: (claims / "props.md").write_text("new\n"))
    gallery.main(out, quick=True, mujoco=False)
    assert "previous gallery" not in (out / "gallery.md").read_text()
    assert (out / "claims" / "props.md").read_text() == "new\n"
    assert (out / "api" / "stub.rst").read_text() == "stub\n"
    assert [p.name for p in tmp_path.iterdir()] == ["generated"]
