"""`RescueCheckpoint`: what a failed run does so that it loses as little as possible, and hangs nowhere.

A crash in validation, in a checkpoint write (a full disk, a file where the checkpoints folder
should be) or anywhere else after the first step would otherwise lose every step since the last
checkpoint. One process saves its whole state first. Several (DDP) cannot: a checkpoint holds
every rank's data position and random state, which only a collective gathers, and after a
failure on one rank the others may never reach it (a full disk on rank 0 left rank 1 waiting
in a barrier while rank 0 waited in the gather: a hang until the test's timeout).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from frcnn.lit.checkpointing import describe_last_checkpoint
from frcnn.lit.divergence import DivergenceError

log = logging.getLogger("train")


class RescueCheckpoint(Callback):
    """On an exception: in one process, after the first training step, save `last.ckpt` to the
    first writable folder of `dirpaths` (e.g. the checkpoints folder, then the run folder) and say
    where in one line.

    In a multi-process run nothing is gathered and nothing is written: the log names the last
    checkpoint that every rank wrote (`LastCheckpoint`, every N steps), and the main process stops
    the other ranks at once — as Lightning does when a child process fails — rather than leave
    them blocked in a collective until the process-group timeout.
    """

    def __init__(self, dirpaths: list[str], filename: str = "last.ckpt") -> None:
        self.dirpaths = [Path(path).expanduser() for path in dirpaths]
        self.filename = filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, DivergenceError):  # every rank stops at once; diverged weights are not worth keeping
            return
        stopped = f"run stopped at step {trainer.global_step} by {type(exception).__name__}"
        if trainer.world_size > 1:
            log.error("%s on rank %d; %s", stopped, trainer.global_rank, _last_complete_checkpoint(trainer))
            _stop_other_ranks(trainer)
        elif trainer.global_step > 0:  # before the first step there is nothing to lose
            self._save(trainer, stopped)

    def _save(self, trainer: pl.Trainer, stopped: str) -> None:
        try:
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        except Exception as error:
            log.error("%s; its state could not be saved: %s", stopped, _one_line(error))
            return
        failures = []
        for folder in self.dirpaths:
            path = folder / self.filename
            try:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            except Exception as error:  # an unwritable folder, a full disk: try the next one
                failures.append(f"{folder}: {_one_line(error)}")
                continue
            log.error("%s: its state is saved in %s (resume: python train.py ckpt_path=%s)", stopped, path, path)
            return
        log.error("%s; its state could not be saved: %s", stopped, "; ".join(failures))


def _last_complete_checkpoint(trainer: pl.Trainer) -> str:
    """Where a multi-process run resumes from, in words."""
    checkpoint = describe_last_checkpoint(trainer)
    if not checkpoint:
        return "a multi-process run saves no state on failure, and no checkpoint was written before it"
    return f"a multi-process run saves no state on failure: resume from {checkpoint}"


def _stop_other_ranks(trainer: pl.Trainer) -> None:
    """SIGKILL the ranks this process launched (Lightning's script launcher keeps them in `procs`)."""
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _SubprocessScriptLauncher) and trainer.is_global_zero:
        launcher.kill(signal.SIGKILL)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
