"""A failure after training has started saves the run's state first, and says where in one line."""

from __future__ import annotations

import logging

import pytest
import torch

from train import train

PLANTED = "+callbacks.planted._target_=tests.lit.planted_failure.FailValidation"


def _rescue_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "run stopped at step" in record.getMessage()]


def test_validation_failure_saves_last_checkpoint(compose_train, tiny_overrides, tmp_path, caplog):
    cfg = compose_train([*tiny_overrides, PLANTED])
    with caplog.at_level(logging.ERROR, logger="train"), pytest.raises(RuntimeError, match="planted failure"):
        train(cfg)
    saved = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == 2
    assert _rescue_lines(caplog) == [
        f"run stopped at step 2 by RuntimeError: its state is saved in {saved} (resume: python train.py ckpt_path={saved})"
    ]
    resumed = compose_train([*tiny_overrides, f"ckpt_path={saved}", "trainer.max_steps=3"], name="resumed")
    train(resumed)
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_unwritable_checkpoints_folder_falls_back_to_the_next(compose_train, tiny_overrides, tmp_path, caplog):
    (tmp_path / "afile").write_text("")
    run_dir = tmp_path / "run"
    dirpaths = f"callbacks.rescue_checkpoint.dirpaths=[{tmp_path / 'afile' / 'checkpoints'},{run_dir}]"
    cfg = compose_train([*tiny_overrides, PLANTED, dirpaths])
    with caplog.at_level(logging.ERROR, logger="train"), pytest.raises(RuntimeError, match="planted failure"):
        train(cfg)
    assert torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 2
    assert _rescue_lines(caplog) == [
        f"run stopped at step 2 by RuntimeError: its state is saved in {run_dir / 'last.ckpt'} "
        f"(resume: python train.py ckpt_path={run_dir / 'last.ckpt'})"
    ]


def test_sanity_validation_fails_before_the_first_step(compose_train, tiny_overrides, caplog):
    """A broken val split stops the run before it trains (the default num_sanity_val_steps > 0)."""
    cfg = compose_train([*tiny_overrides, PLANTED, "+callbacks.planted.in_sanity_check=true"])
    assert cfg.trainer.num_sanity_val_steps > 0
    with caplog.at_level(logging.ERROR, logger="train"), pytest.raises(RuntimeError, match="planted failure in validation at step 0"):
        train(cfg)
    assert _rescue_lines(caplog) == [], "nothing trained, nothing to save"
