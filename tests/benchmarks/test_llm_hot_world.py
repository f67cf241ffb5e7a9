import json

import pytest

from benchmarks import llm_hot_world
from benchmarks.harness import add_runs_saved_meanwhile


def run(tokenizer, seed, dev, hot):
    return {"hops": 1, "tokenizer": tokenizer, "seed": seed, "vocabulary": 1000, "seconds": 60.0, "train_em": 0.5,
            "dev_em": dev, "hot_em": hot, "hot_gold_doc_recall": hot}  # fmt: skip


def test_summary_gives_means_and_the_hot_to_dev_ratio_per_tokenizer():
    runs = [run("bpe", 0, 0.2, 0.2), run("bpe", 1, 0.4, 0.3), run("word", 0, 0.4, 0.0), run("word", 1, 0.2, 0.0)]
    rows = {row["tokenizer"]: row for row in llm_hot_world.summarize(runs)}
    assert rows["bpe"]["dev"][0] == pytest.approx(0.3) and rows["bpe"]["hot"][0] == pytest.approx(0.25)
    assert rows["bpe"]["ratio"] == pytest.approx(0.25 / 0.3)
    assert rows["word"]["ratio"] == 0.0 and rows["word"]["seeds"] == 2
    low, high = rows["bpe"]["dev"][1:]
    assert 0.2 <= low <= 0.3 <= high <= 0.4
    payload = {"args": vars(llm_hot_world.parse_args([])), "runs": runs}
    table = llm_hot_world.render(payload)
    assert "| 1 | bpe | 1000 | 2 |" in table and "| 0.83 | yes |" in table and "| 0.00 | no |" in table
    near_zero = [run("bpe", 0, 0.0, 0.05), run("bpe", 1, 0.1, 0.1)]  # hot / dev 1.5, but dev EM's CI reaches 0
    assert "| 1.50 | no (dev EM's CI reaches 0) |" in llm_hot_world.render({**payload, "runs": near_zero})


def test_runs_saved_by_another_invocation_are_kept(tmp_path):
    args = llm_hot_world.settings(llm_hot_world.parse_args(["--seeds", "0"]))
    (tmp_path / "llm_hot_world.json").write_text(
        json.dumps({"args": {**args, "seeds": [1]}, "runs": [run("bpe", 1, 0.2, 0.2)]})
    )
    payload = {"args": args, "runs": [run("bpe", 0, 0.4, 0.3)]}
    add_runs_saved_meanwhile(payload, tmp_path / "llm_hot_world.json", llm_hot_world.run_key, llm_hot_world.SELECTION)
    assert sorted(r["seed"] for r in payload["runs"]) == [0, 1]
