"""Copy trained behaviour policies into the package data and merge their manifests.

    python scripts/ship_behaviour_policies.py runs/behaviour/pendulum [runs/behaviour/hopper ...]

Each folder is the ``--out`` of ``scripts/train_behaviour_policies.py``. A one-run folder (``--level both``)
holds ``<task>_manifest.json``; a two-run task passes its expert folder and its medium folder
(``<task>_expert_manifest.json`` and ``<task>_medium_manifest.json``), whose entries are merged, the medium
run's own record kept under ``medium_run``. The ``<task>_expert.npz``, ``<task>_medium.npz`` and
``<task>_medium_replay.npz`` found are copied to ``palaestra/envs/offline/data/`` and the merged record
becomes the ``<task>`` entry of ``data/manifest.json``.
"""

import json
import shutil
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "palaestra" / "envs" / "offline" / "data"
FILES = {"both": ("expert", "medium", "medium_replay"), "expert": ("expert",), "medium": ("medium", "medium_replay")}


def read_runs(folders: list[Path]) -> dict[str, dict[str, tuple[Path, dict]]]:
    """``{task: {level: (folder, manifest)}}`` for every manifest in ``folders``."""
    runs: dict[str, dict[str, tuple[Path, dict]]] = {}
    for folder in folders:
        manifests = sorted(folder.glob("*_manifest.json"))
        if not manifests:
            raise SystemExit(f"{folder} holds no *_manifest.json; pass the --out folder of a finished training run")
        for path in manifests:
            stem = path.name.removesuffix("_manifest.json")
            task, _, level = stem.partition("_")
            runs.setdefault(task, {})[level or "both"] = (folder, json.loads(path.read_text()))
    return runs


def merged_entry(task: str, levels: dict[str, tuple[Path, dict]]) -> dict:
    """One task's manifest entry from a one-run manifest or an expert and a medium manifest."""
    if "both" in levels:
        return levels["both"][1]
    if set(levels) != {"expert", "medium"}:
        raise SystemExit(f"{task}: pass both its expert and its medium run folders (found {sorted(levels)})")
    entry, medium = dict(levels["expert"][1]), levels["medium"][1]
    entry["medium"] = medium["medium"]
    entry["medium_replay_transitions"] = medium["medium_replay_transitions"]
    keys = ("seed", "total_steps", "train_seconds", "random_return", "eval_curve", "commands")
    entry["medium_run"] = {key: medium[key] for key in keys}
    return entry


if __name__ == "__main__":
    manifest_path = DATA / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for task, levels in read_runs([Path(arg) for arg in sys.argv[1:]]).items():
        entry = merged_entry(task, levels)
        for level, (folder, _) in levels.items():
            for kind in FILES[level]:
                shutil.copyfile(folder / f"{task}_{kind}.npz", DATA / f"{task}_{kind}.npz")
        manifest[task] = entry
        print(f"shipped {task}: expert return {entry['expert']['return']:.1f}, medium {entry['medium']['return']:.1f}")
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
