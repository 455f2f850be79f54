"""Training health in the logs costs no host synchronisation in the steps that do not log."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from host_syncs import SyncsPerStep
from train import train


@pytest.mark.slow
def test_health_logging_syncs_only_at_the_logging_interval(compose_train, tiny_overrides):
    """The same 3-step run with and without `TrainingHealth`, logging every 2nd step: step 0 (no
    logging) syncs as often with it as without; step 1 (logging) reads its values."""
    counts = {}
    for name, health in (("with", "frcnn.lit.monitoring.TrainingHealth"), ("without", None)):
        overrides = [*tiny_overrides, "callbacks=none", "logger=csv", "trainer.max_steps=3", "trainer.log_every_n_steps=2"]
        cfg = compose_train([*overrides, "trainer.num_sanity_val_steps=0"], name=name)
        with open_dict(cfg):
            cfg.callbacks = {"probe": {"_target_": "host_syncs.SyncsPerStep"}}
            if health:
                cfg.callbacks["health"] = {"_target_": health}
        train(cfg)
        counts[name] = SyncsPerStep.runs[-1]
    assert len(counts["with"]) == len(counts["without"]) == 2, counts
    assert counts["with"][0] == counts["without"][0], counts
    assert counts["with"][1] > counts["without"][1], counts
