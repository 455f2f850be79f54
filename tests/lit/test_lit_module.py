import math

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from frcnn.lit import DetectionModule
from frcnn.evaluation.inference import in_original_pixels


class NaNDetector(nn.Module):
    """Stands in for FasterRCNN: four losses from one weight, NaN on the calls (from 1) in ``nan_calls``."""

    def __init__(self, nan_calls) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.calls = 0
        self.nan_calls = nan_calls

    def forward(self, images, targets=None):
        self.calls += 1
        scale = math.nan if self.calls in self.nan_calls else 1.0
        loss = (self.weight * scale).sum()
        return {"rpn_cls": loss, "rpn_box": loss, "roi_cls": loss, "roi_box": loss}


def _module(compose_train, tiny_overrides) -> DetectionModule:
    cfg = compose_train([*tiny_overrides, "scheduler.warmup_steps=0", "model.num_classes=2"])
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)
    return DetectionModule(plain, class_names=["background", "a"], label_to_category_id=torch.tensor([0, 7]))


def test_hyperparameters_are_plain_containers(compose_train, tiny_overrides):
    module = _module(compose_train, tiny_overrides)
    assert type(module.hparams.cfg) is dict
    assert module.hparams.label_to_category_id == [0, 7]


def test_nonfinite_loss_skips_the_step(compose_train, tiny_overrides, caplog):
    module = _module(compose_train, tiny_overrides)
    module.model = NaNDetector(nan_calls={1})
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    batches = [([image], [target])] * 2
    loader = torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="train"):
        trainer.fit(module, train_dataloaders=loader)
    assert "non-finite loss at step 0 (rpn_cls=nan" in caplog.text
    assert module.nonfinite_steps.total == 1
    weight = module.model.weight.detach()
    assert torch.isfinite(weight).all()
    assert weight.item() < 1.0, "the finite second step still trains"


def test_boxes_back_to_original_pixels():
    # A 200 x 100 (H x W) image resized to 400 x 300: x scales by 1/3, y by 1/2.
    target = {"orig_size": torch.tensor([200, 100]), "size": torch.tensor([400, 300])}
    pred = {"boxes": torch.tensor([[30.0, 40.0, 90.0, 400.0]]), "scores": torch.tensor([0.9])}
    (mapped,) = in_original_pixels([pred], [target])
    assert torch.allclose(mapped["boxes"], torch.tensor([[10.0, 20.0, 30.0, 200.0]]))
    assert mapped["scores"] is pred["scores"]
