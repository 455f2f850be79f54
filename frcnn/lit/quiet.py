"""Lightning's notices that say nothing about the user's run, turned off where they start.

Each is turned off by Lightning's own switch where one exists (``enable_model_summary: false``
in ``conf/trainer/default.yaml``, ``seed_everything(verbose=False)``, ``weights_only`` passed to
``trainer.save_checkpoint``); the rest are Lightning's info-level lines, which its documentation
tunes by logger level. Lightning's warnings go through :mod:`warnings` and are left alone.
"""

from __future__ import annotations

import logging

# Lightning's `rank_zero_info` lines: "GPU available: ..., used: ...", "TPU available: ...", the
# "💡 Tip" for a cloud logger, "Loading `train_dataloader` to estimate number of stepping
# batches", "`Trainer.fit` stopped: `max_steps=N` reached". The run's own start block and
# summary (frcnn.lit.run_report) say what of them matters: devices, steps, why it stopped.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def quiet_lightning() -> None:
    """Keep Lightning's warnings and errors, drop its info-level notices."""
    logging.getLogger(LIGHTNING_INFO_LOGGER).setLevel(logging.WARNING)
