import tempfile

from palaestra.agents.sb3_logger import console_logger


def test_console_logger_prints_when_verbose_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for verbose in (True, False):
        logger = console_logger(verbose)
        logger.record("train/loss", 0.5)
        logger.dump(1)
    assert capsys.readouterr().out.count("loss | 0.5") == 1  # printed once, by the verbose logger
    assert list(tmp_path.iterdir()) == []  # SB3's configure(None, ...) would have made an SB3-<date> folder here
