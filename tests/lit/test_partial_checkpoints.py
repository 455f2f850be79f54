"""A checkpoint write cut short leaves no `.partial` file behind: the atomic writer removes its own
on failure, and the next start of the run removes those a kill left."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from frcnn.lit.checkpointing import AtomicCheckpointIO, LastCheckpoint


def test_failed_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(Exception):
        AtomicCheckpointIO().save_checkpoint({"not picklable": lambda: None}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_next_start_removes_what_a_killed_writer_left(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    left = tmp_path / f".last.ckpt.{int(dead.stdout)}.partial"
    left.write_bytes(b"half a checkpoint")
    writing = tmp_path / f".epoch=0.ckpt.{os.getpid()}.partial"  # a live writer's: kept
    writing.write_bytes(b"in progress")
    (tmp_path / "last.ckpt").write_bytes(b"whole")
    with caplog.at_level(logging.WARNING):
        LastCheckpoint(str(tmp_path)).setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([writing.name, "last.ckpt"])
    assert f"removed 1 partial checkpoint file(s) an interrupted write left in {tmp_path}" in caplog.text
