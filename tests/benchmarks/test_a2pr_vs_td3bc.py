from benchmarks.a2pr_vs_td3bc import parse_args, rerun_command


def test_the_rerun_command_names_every_setting_that_differs_from_the_defaults():
    settings = {k: v for k, v in vars(parse_args(["--task", "hopper", "--steps", "20000"])).items() if k != "fresh"}
    assert rerun_command(settings) == "python -m benchmarks.a2pr_vs_td3bc --steps 20000 --task hopper"
    assert parse_args(rerun_command(settings).split()[3:]).width == 256  # the task's default width
    pendulum = vars(parse_args(["--seeds", "0", "1", "--width", "64"]))
    assert rerun_command(pendulum) == "python -m benchmarks.a2pr_vs_td3bc --seeds 0 1 --width 64"
