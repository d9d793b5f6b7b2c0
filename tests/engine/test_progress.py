"""Progress in logs: plain lines every 10 % (never `\\r` refreshes) when stderr is no terminal."""

import logging

from vwe.engine.progress import NoProgress, PlainProgress, progress


def test_plain_lines_every_tenth_and_at_the_end(caplog):
    with caplog.at_level(logging.INFO, logger="vwe.engine.progress"):
        assert list(PlainProgress(range(25), total=25, desc="make-cam")) == list(range(25))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split()[1] for line in lines] == [f"{n}/25" for n in (2, 4, 6, 8, 10, 12, 14,
                                                                        16, 18, 20, 22, 24, 25)]
    assert all(line.startswith("make-cam: ") and "\r" not in line for line in lines)


def test_training_style_updates_and_postfix(caplog):
    with caplog.at_level(logging.INFO, logger="vwe.engine.progress"):
        bar = PlainProgress(range(5, 10), total=10, desc="train-cam", initial=5)
        for _ in range(5):
            bar.update(1)
            bar.set_postfix(loss="0.5000")
        bar.close()
    assert caplog.records[-1].getMessage().startswith("train-cam: 10/10")
    assert "loss=0.5000" in caplog.records[-1].getMessage()


def test_a_redirected_stderr_gets_plain_progress(capsys):
    assert isinstance(progress(range(3), total=3, desc="x"), PlainProgress)  # capsys: no tty


def test_other_ranks_get_silent_progress_without_a_tqdm(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="vwe.engine.progress"):
        bar = progress(range(3), total=3, desc="x", enabled=False)
        assert isinstance(bar, NoProgress)  # a disabled tqdm would start a monitor thread
        assert list(bar) == [0, 1, 2]
        bar.update(1)
        bar.set_postfix(loss="0.5")
        bar.close()
    assert not caplog.records and capsys.readouterr() == ("", "")
