"""Every validation pass counts its bad rows once, wherever they sit, with or without a sanity
check, and `data.max_skip_fraction` sees validation's losses (a dummy model: only the data runs)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.row_checks import UNDECODABLE_IMAGE
from frcnn.data.source import DataSourceError
from frcnn.data.sources.hub import HubDataset
from frcnn.lit.data_report import DataReport
from tests.data.hub_rows import hub_row, jpeg_bytes, write_split


class _DataOnly(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return self.weight.sum()

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data(tmp_path, bad_position: int, num_workers: int, max_skip_fraction: float = 1.0) -> DetectionDataModule:
    rows = [hub_row(i + 1, boxes=[(4.0, 6.0, 40.0, 30.0)], categories=[2]) for i in range(8)]
    rows[bad_position]["image"] = {"bytes": jpeg_bytes(64, 48)[:300], "path": None}  # truncated
    write_split(tmp_path, "train", [row for i, row in enumerate(rows) if i != bad_position], 1)
    write_split(tmp_path, "val", rows, 1)
    return DetectionDataModule(
        HubDataset, path=str(tmp_path), batch_size=2, num_workers=num_workers, min_size=64, max_size=96,
        max_skip_fraction=max_skip_fraction,
    )  # fmt: skip


def _fit(dm: DetectionDataModule, sanity_steps: int) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, num_sanity_val_steps=sanity_steps, val_check_interval=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[DataReport()],
    )  # fmt: skip
    trainer.fit(_DataOnly(), datamodule=dm)
    return trainer


@pytest.mark.filterwarnings("ignore:skipping image_id")
@pytest.mark.parametrize(("bad_position", "sanity_steps", "num_workers"), [(0, 0, 0), (0, 2, 1), (7, 2, 0), (0, 0, 1)])
def test_each_validation_counts_its_bad_row_once(tmp_path, bad_position, sanity_steps, num_workers):
    dm = _data(tmp_path, bad_position, num_workers)
    _fit(dm, sanity_steps)
    assert dm.val_dataset.decode_problems() == {UNDECODABLE_IMAGE: 1}
    assert dm.val_dataset.rows_read == 8


@pytest.mark.filterwarnings("ignore:skipping image_id")
def test_validation_losses_trip_max_skip_fraction(tmp_path):
    dm = _data(tmp_path, bad_position=0, num_workers=0, max_skip_fraction=0.1)
    with pytest.raises(DataSourceError, match=r"'val' lost 12.5% of its rows as bad \(most: undecodable_image=1, e.g. image_id=1\)"):
        _fit(dm, sanity_steps=0)
