"""Cellpose training progress comes from train_seg's epoch log lines, without leaking INFO logs."""

from __future__ import annotations

import logging

from cellbench.methods.adapters.cellpose import _epoch_progress


def test_epoch_lines_drive_the_bar_and_info_stays_quiet(caplog):
    ticks = []

    def progress(iterable, **kw):
        for item in iterable:
            ticks.append(item)
            yield item

    logger = logging.getLogger("cellpose.train")
    with caplog.at_level(logging.WARNING):
        with _epoch_progress(progress, 25):
            logger.info("0, train_loss=1.0, test_loss=0.0, LR=0.0, time 1s")
            assert ticks == [0]
            logger.info("10, train_loss=0.5, test_loss=0.0, LR=0.1, time 2s")
            assert ticks == list(range(11))
            logger.warning("something worth seeing")
        assert ticks == list(range(25))
    assert "train_loss" not in caplog.text and "something worth seeing" in caplog.text
    assert logger.propagate and logger.level == logging.NOTSET and not logger.handlers
