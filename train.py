"""Train Faster R-CNN R50-FPN: ``python train.py [group=option] [key=value] ...``.

The config is ``conf/train.yaml`` composed by Hydra; each run writes its config, checkpoints
and TensorBoard events to ``outputs/YYYY-MM-DD/HH-MM-SS`` (``-m`` sweeps: ``outputs/multirun/``).

    python train.py data=shapes trainer.max_steps=5          # offline smoke run
    python train.py ckpt_path=outputs/.../checkpoints/last.ckpt trainer.max_steps=10   # resume
    python train.py resume=true hydra.run.dir=outputs/DATE/TIME                       # resume in place
    python train.py -m optimizer.lr=0.01,0.02 data=shapes trainer.max_steps=5        # sweep
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import hydra
import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from frcnn import preflight
from frcnn.checkpoint import CheckpointError
from frcnn.data.schema import SchemaError
from frcnn.data.source import DataSourceError
from frcnn.initialise import initialise
from frcnn.lit import DetectionModule
from frcnn.lit.divergence import DivergenceError
from frcnn.lit.module import ConfigError
from frcnn.lit.quiet import quiet_lightning

log = logging.getLogger("train")
# A deprecation notice raised inside Lightning itself: nothing a user can act on.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")

# Mistakes in a command line or an environment: reported in one line, without a traceback.
USER_ERRORS = (
    ConfigError,
    InstantiationException,
    OmegaConfBaseException,
    MisconfigurationException,
    FileNotFoundError,
    DataSourceError,
    SchemaError,
    ConnectionError,
    preflight.PreflightError,
    CheckpointError,
)


def train(cfg: DictConfig) -> float | None:
    """Fit one run described by ``cfg``; return the ``cfg.monitor`` metric (for sweepers)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the start block names the seed
    if cfg.get("cpu_threads"):
        torch.set_num_threads(cfg.cpu_threads)
    preflight.check_config(cfg)
    with open_dict(cfg):  # null backbone norm / trainable_layers: what the weights call for, also in checkpoints
        for key, value in preflight.resolve_backbone_training(cfg.model, cfg.get("require_weights")).items():
            cfg.model.backbone[key] = value
    ckpt_path = resume_checkpoint(cfg)

    check_accelerator(cfg.trainer)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    with open_dict(cfg):
        cfg.model.num_classes = preflight.resolve_num_classes(
            cfg.model.get("num_classes"), datamodule.num_classes, f"data.path={cfg.data.get('path')}"
        )
    # The run's config without Hydra's own node (present when composed by tests), resolved.
    module_cfg = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)
    module = DetectionModule(module_cfg, datamodule.class_names, datamodule.label_to_category_id)
    preflight.check_frozen_layers(cfg.model, module.model.backbone)
    if ckpt_path is not None:
        preflight.check_resume_checkpoint(ckpt_path, module.model)
    elif cfg.model.get("weights"):
        initialise(module.model, cfg.model.weights, datamodule.class_names, cfg.model.get("weights_classes", "by_name"))
    preflight.check_checkpoint_space(cfg, module.model)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, precision=resolve_precision(cfg.trainer), callbacks=callbacks, logger=loggers or False
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)

    metric = trainer.callback_metrics.get(cfg.monitor)
    return float(metric) if metric is not None else None


def instantiate_group(group: DictConfig | None) -> list:
    """The objects of a ``callbacks``/``logger`` group; an entry set to null is left out."""
    return [hydra.utils.instantiate(entry) for entry in (group or {}).values() if entry is not None]


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from: ``ckpt_path``, or ``<run dir>/checkpoints/last.ckpt``
    with ``resume=true``; None for a fresh run."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and cfg.get("resume"):
        ckpt_path = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    if ckpt_path is None:
        return None
    ckpt_path = hydra.utils.to_absolute_path(str(ckpt_path))
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    return ckpt_path


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A CUDA request on a machine without CUDA: say so before anything is built."""
    if trainer_cfg.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise MisconfigurationException(
            f"trainer.accelerator={trainer_cfg.accelerator} but this machine has no CUDA device: "
            "use trainer=cpu or trainer.accelerator=auto"
        )


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``auto``: 16-bit mixed precision when the run goes to CUDA, full precision otherwise."""
    precision = str(trainer_cfg.get("precision", "auto"))
    if precision != "auto":
        return precision
    on_cuda = torch.cuda.is_available() and trainer_cfg.get("accelerator") in ("auto", "gpu", "cuda")
    return "16-mixed" if on_cuda else "32-true"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_lightning()
    try:
        return train(cfg)
    except (*USER_ERRORS, DivergenceError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if isinstance(error, InstantiationException) and isinstance(error.__cause__, USER_ERRORS):
            error = error.__cause__  # e.g. the data module's own one-line error, not Hydra's wrapper
        message = " ".join(str(error).split())
        if rank_zero_only.rank == 0 or not isinstance(error, DivergenceError):  # every rank stops at the same step
            log.error("%s: %s (HYDRA_FULL_ERROR=1 for the traceback)", type(error).__name__, message)
        sys.exit(1)


if __name__ == "__main__":
    main()
