"""Checkpoints survive kills: a process killed while writing leaves the previous file loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from frcnn.lit.checkpointing import AtomicCheckpointIO

# Writes a first checkpoint, then starts a second one whose write never finishes.
_WRITER = """
import sys, time, torch
from frcnn.lit.checkpointing import AtomicCheckpointIO
path = sys.argv[1]
AtomicCheckpointIO().save_checkpoint({"step": 1, "weights": torch.ones(1000)}, path)
real_save = torch.save
def slow_save(obj, file):
    file.write(b"PK\\x03\\x04 half of a checkpoint")
    file.flush()
    print("writing", flush=True)
    time.sleep(600)
torch.save = slow_save
AtomicCheckpointIO().save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, path)
"""


def test_a_kill_during_the_write_keeps_the_previous_checkpoint(tmp_path: Path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "writing"  # the second write has begun
    assert any(path.parent.glob(".last.ckpt.*.partial"))
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["step"] == 1 and torch.equal(checkpoint["weights"], torch.ones(1000))


def test_save_replaces_the_file_whole(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    for step in (1, 2):
        io.save_checkpoint({"step": step}, path)
    assert torch.load(path, weights_only=True) == {"step": 2}
    assert [file.name for file in tmp_path.iterdir()] == ["last.ckpt"]
