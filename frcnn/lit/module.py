"""The LightningModule that trains and validates a :class:`frcnn.modeling.FasterRCNN`.

Checkpoint contract (``evaluate.py`` reads it): ``checkpoint["hyper_parameters"]`` holds only
plain containers, so ``torch.load(path, weights_only=True)`` works:

- ``cfg`` (dict): the full resolved training config (``train.yaml`` composed, no ``hydra``
  node); ``cfg["model"]`` is the ``FasterRCNN`` config with ``_target_`` and the true
  ``num_classes``.
- ``class_names`` (list[str] | None): index = label, ``class_names[0] == "background"``.
- ``label_to_category_id`` (list[int] | dict[int, int] | None): label -> dataset category id.

``DetectionModule(**checkpoint["hyper_parameters"])`` rebuilds the module;
:meth:`DetectionModule.from_checkpoint` does that and loads the weights.

Batches are ``(images, targets)``: images a list of uint8 ``(3, H, W)`` tensors already resized
by the data module; targets dicts with ``boxes`` (Tensor[N, 4], xyxy pixels of the resized
image), ``labels`` (Tensor[N], 1..C-1), ``image_id``, ``orig_size`` (H0, W0) and ``size`` (H, W).

Validation scores against the split's stored annotations (``trainer.datamodule.val_ground_truth()``,
the official COCO protocol, :mod:`frcnn.evaluation.ground_truth`), not against these targets.
With ``module.val_loss`` it also logs the four losses against these targets (``val/loss``,
``val/rpn_cls`` ...), from the same forward pass (``FasterRCNN.detect_with_losses``), with
samplers drawing from a generator of the module's own, seeded anew at every validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from frcnn.checkpoint import CheckpointError, instantiate_model, load_checkpoint
from frcnn.evaluation import COCOEvaluator
from frcnn.evaluation.inference import in_original_pixels
from frcnn.lit.checkpointing import describe_last_checkpoint
from frcnn.lit.divergence import NonFiniteSteps
from frcnn.lit.monitoring import logs_this_step
from frcnn.modeling.faster_rcnn import LOSS_NAMES

Batch = tuple[list[Tensor], list[dict[str, Tensor]]]
VAL_METRIC_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")
VAL_LOSS_SEED = 0  # the validation loss's samplers start from this seed at every validation


class ConfigError(ValueError):
    """A config value that the optimizer or the scheduler rejects."""


class DetectionModule(pl.LightningModule):
    """Wraps the detector: four losses in training, COCO mAP in validation, the optimizer and
    its schedule. A step with a non-finite loss is skipped and counted; too many in a row stop
    the run (`frcnn.lit.divergence`). What a run shows besides (speed, memory, health, pictures)
    and the per-rank random state live in callbacks (`frcnn.lit.monitoring`, `frcnn.lit.rng_state`).

    Args:
        cfg: the resolved training config as a plain dict (see the module docstring); this
            module reads ``model``, ``optimizer``, ``scheduler``, ``module`` and ``data.batch_size``.
        class_names: index = label, background first; names per-class AP and drawn boxes.
        label_to_category_id: label -> dataset category id, for the COCO evaluation.
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        class_names: Sequence[str] | None = None,
        label_to_category_id: Sequence[int] | Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        class_names = list(class_names) if class_names is not None else None
        label_to_category_id = _plain_mapping(label_to_category_id)
        self.save_hyperparameters(
            {"cfg": cfg, "class_names": class_names, "label_to_category_id": label_to_category_id}
        )
        self.cfg = cfg
        self.model = instantiate_model(cfg["model"])
        self.per_class_ap = bool(cfg.get("module", {}).get("per_class_ap", False))
        self.val_loss = bool(cfg.get("module", {}).get("val_loss", False))
        self._val_generator: torch.Generator | None = None
        self._val_loss_sums: Tensor | None = None  # [5]: the four losses times images, and images
        self.nonfinite_steps = NonFiniteSteps(cfg.get("module", {}).get("max_nonfinite_steps", 10))
        self._skip_update = False  # a non-finite loss since the last optimizer step
        self.val_metric = COCOEvaluator(label_to_category_id, class_metrics=self.per_class_ap)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DetectionModule:
        """Rebuild the module from a checkpoint of this app and load its weights.

        Reads it with :func:`frcnn.checkpoint.load_checkpoint` (``weights_only=True``, old
        configs translated). The weights files named in the config are not read: the
        checkpoint's state dict replaces them.
        """
        checkpoint = load_checkpoint(path)
        if checkpoint.is_bare:
            raise CheckpointError(f"{path} holds model weights only: DetectionModule needs a checkpoint of this app")
        module = cls(checkpoint.cfg, checkpoint.class_names, checkpoint.label_to_category_id)
        module.model.load_state_dict(checkpoint.model_state_dict)
        return module.to(map_location)

    # ---------------------------------------------------------------- training

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        # One host sync per step to decide the skip, agreed across ranks: every rank skips the
        # same steps and stops at the same one.
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True)
        if finite:
            self.nonfinite_steps.finite()
        else:  # counted; at module.max_nonfinite_steps in a row, every rank raises DivergenceError here
            values = {name: value.item() for name, value in losses.items()}
            lr = self.optimizers().param_groups[0]["lr"]
            self.nonfinite_steps.skip(self.global_step, values, lr, describe_last_checkpoint(self.trainer))
            self._skip_update = True
        batch_size = len(images)
        if logs_this_step(self.trainer):  # a host-to-device copy: only at the logging interval
            self.log("train/skipped_steps", float(self.nonfinite_steps.total), on_step=True, batch_size=batch_size)
        if not finite:
            # The loss still goes through backward (DDP's gradient all-reduce needs every rank's;
            # Lightning refuses a None under DDP); on_before_optimizer_step drops the gradients.
            return loss
        self.log_dict(
            {f"train/{name}": losses[name].detach() for name in LOSS_NAMES}, on_step=True, batch_size=batch_size
        )
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, batch_size=batch_size)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A step (or accumulation window) with a non-finite loss updates nothing: without
        gradients the optimizer leaves every weight, momentum and decay untouched."""
        if self._skip_update:
            optimizer.zero_grad(set_to_none=True)
            self._skip_update = False

    # -------------------------------------------------------------- validation

    def validation_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Tensor]]:
        """Scores the batch; returns its detections (in the batch's pixels) for callbacks."""
        images, targets = batch
        if self.val_loss:
            preds, losses = self.model.detect_with_losses(images, targets, self._val_generator)
            self._val_loss_sums[:-1] += torch.stack([losses[name] for name in LOSS_NAMES]) * len(images)
            self._val_loss_sums[-1] += len(images)
        else:
            preds = self.model(images)
        self.val_metric.update(
            in_original_pixels(preds, targets), [target["image_id"] for target in targets], [target["orig_size"] for target in targets]
        )
        return preds

    def on_validation_epoch_start(self) -> None:
        if self.val_loss:  # not torch's global stream: training's samplers draw from that one
            self._val_generator = torch.Generator(self.device).manual_seed(VAL_LOSS_SEED)
            self._val_loss_sums = torch.zeros(len(LOSS_NAMES) + 1, device=self.device)
        # The split's stored annotations (cached by the data module) and its ids, from one source:
        # every rank holds them all, and the metric scores the images the ranks evaluated together.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "val_ground_truth"):
            self.val_metric.ground_truth = datamodule.val_ground_truth()
            self.val_metric.label_to_category_id = datamodule.label_to_category_id

    def on_validation_epoch_end(self) -> None:
        if self.val_loss:
            self._log_val_loss()
        metrics = self.val_metric.compute()
        self.val_metric.reset()
        self.log_dict({f"val/{name}": metrics[name] for name in VAL_METRIC_NAMES}, sync_dist=True)
        if self.per_class_ap and "map_per_class" in metrics:
            names = self.hparams.class_names
            per_class = {
                f"val/ap/{names[label] if names else label}": ap
                for label, ap in zip(metrics["classes"].tolist(), metrics["map_per_class"])
            }
            self.log_dict(per_class, sync_dist=True)

    def _log_val_loss(self) -> None:
        """The image-weighted mean of each loss over every rank's images. Reduced here, where
        every rank takes part, not by ``self.log(sync_dist=True)`` per step: a rank without
        validation images would never join that reduction and the others would wait for it."""
        sums = self.trainer.strategy.reduce(self._val_loss_sums, reduce_op="sum")
        num_images = sums[-1]
        if num_images > 0:
            means = sums[:-1] / num_images
            values = {f"val/{name}": mean for name, mean in zip(LOSS_NAMES, means)}
            self.log_dict({**values, "val/loss": means.sum()})

    # -------------------------------------------------------------- prediction

    def predict_step(self, batch: Batch | list[Tensor], batch_idx: int) -> list[dict[str, Tensor]]:
        """``trainer.predict(module, loader)``: ``boxes``, ``scores``, ``labels`` per image.

        ``batch`` is ``(images, targets)`` as in validation (boxes mapped from ``size`` to
        ``orig_size`` pixels, ``image_id`` passed on) or a list of images (boxes in their pixels).
        """
        images, targets = batch if isinstance(batch, tuple) else (batch, None)
        preds = self.model(images)
        if targets is None:
            return preds
        return [{**pred, "image_id": target["image_id"]} for pred, target in zip(in_original_pixels(preds, targets), targets)]

    # ------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer and per-step scheduler from the Hydra partials in ``cfg``."""
        params = [param for param in self.model.parameters() if param.requires_grad]
        total_steps = self.trainer.estimated_stepping_batches
        total_steps = int(total_steps) if math.isfinite(total_steps) else None
        steps_per_epoch = self.cfg["scheduler"].get("steps_per_epoch") or self._steps_per_epoch(total_steps)
        try:
            optimizer = hydra.utils.instantiate(self.cfg["optimizer"], _convert_="all")(params, total_batch=self._total_batch())
        except (TypeError, ValueError) as error:
            raise ConfigError(f"optimizer {_describe(self.cfg['optimizer'])}: {error}") from error
        try:
            scheduler = hydra.utils.instantiate(self.cfg["scheduler"], _convert_="all")(
                optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"scheduler {_describe(self.cfg['scheduler'])}: {error}") from error
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_batch(self) -> int:
        """Images per optimizer step: ``data.batch_size`` × devices × nodes × accumulated batches."""
        trainer = self.trainer
        return int(self.cfg["data"]["batch_size"]) * trainer.world_size * trainer.accumulate_grad_batches

    def _steps_per_epoch(self, total_steps: int | None) -> int | None:
        """Optimizer steps in one pass over the training data: from the loader's length (our
        stream's is exact and equal on every rank); for a loader without one, a run bounded by
        ``max_steps`` is taken to span ``max_epochs``."""
        trainer = self.trainer
        num_batches = trainer.num_training_batches
        if math.isfinite(num_batches):
            return max(math.ceil(num_batches / trainer.accumulate_grad_batches), 1)
        if total_steps is not None and trainer.max_epochs and trainer.max_epochs > 0:
            return max(math.ceil(total_steps / trainer.max_epochs), 1)
        return None


def _describe(partial_cfg: Mapping[str, Any]) -> str:
    """``_target_(key=value, ...)`` of a Hydra partial config, for error messages."""
    options = ", ".join(f"{key}={value!r}" for key, value in partial_cfg.items() if not key.startswith("_"))
    return f"{partial_cfg.get('_target_')}({options})"


def _plain_mapping(mapping: Any) -> list[int] | dict[int, int] | None:
    """``label_to_category_id`` as a list or dict of ints (safe under ``weights_only``)."""
    if mapping is None:
        return None
    if isinstance(mapping, Tensor):
        return [int(value) for value in mapping.tolist()]
    if isinstance(mapping, Mapping):
        return {int(label): int(category) for label, category in mapping.items()}
    return [int(value) for value in mapping]
