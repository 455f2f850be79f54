"""The data-source seam: every data config builds its source class, and a new source is one
class and one yaml (here a source of in-memory rows, read by the data module like the others)."""

import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from frcnn.data.datamodule import DetectionDataModule, build_source
from frcnn.data.source import DataSource, DataSourceError, Row, RowSource
from frcnn.data.sources.coco_folder import CocoFolder
from frcnn.data.sources.hub import HubDataset
from frcnn.data.sources.shapes import Shapes
from hub_rows import hub_row

CONF_DIR = Path(__file__).parents[2] / "conf"


@pytest.mark.parametrize(
    ("name", "source_class"), [("coco", HubDataset), ("shapes", Shapes), ("coco_folder", CocoFolder)]
)
def test_every_data_config_builds_its_source(name, source_class):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={name}", "data.path=/data/x"])
    assert cfg.data._target_ == "frcnn.data.datamodule.DetectionDataModule"
    source = build_source(cfg.data)
    assert type(source) is source_class and str(source.path) == "/data/x"


class MemoryRows(RowSource):
    """`count` rows of one box each, in units of 2."""

    def __init__(self, count: int) -> None:
        self.description, self.revision = "memory", None
        self.unit_sizes = np.asarray([2] * (count // 2), dtype=np.int64)
        self.rows = [hub_row(index + 1, 32, 24, boxes=[(2.0, 2.0, 20.0, 16.0)], categories=[index % 2]) for index in range(count)]

    def read_unit(self, unit: int) -> list[Row]:
        return self.rows[self.unit_starts[unit] : self.unit_starts[unit + 1]]

    def annotations(self) -> list[Row]:
        return [{key: value for key, value in row.items() if key != "image"} for row in self.rows]


class MemorySource(DataSource):
    """Two classes; `path` is the number of rows a split has (any key of the data config comes here)."""

    def __init__(self, path: str) -> None:
        self.count = int(path)

    def categories(self, split: str) -> tuple[list[str], list[int]]:
        return ["cat", "dog"], [17, 18]

    def open(self, split: str) -> MemoryRows:
        return MemoryRows(self.count)


def test_a_new_source_is_one_class_and_one_yaml(tmp_path):
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "data" / "memory.yaml").write_text(
        "defaults:\n  - base/datamodule@_here_  # the data module's shared options\n  - _self_\n"
        "source:\n  _target_: test_sources.MemorySource\n  _partial_: true\npath: '6'\n"
    )
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["data=memory", "data.num_workers=0", "data.resize=none"])
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert dm.class_names == ["background", "cat", "dog"] and dm.label_to_category_id == [0, 17, 18]
    dm.setup("fit")
    ids = [int(target["image_id"]) for _, targets in dm.val_dataloader() for target in targets]
    assert ids == [1, 2, 3, 4, 5, 6]
    assert [a["category_id"] for a in dm.val_ground_truth()["annotations"]] == [17, 18, 17, 18, 17, 18]
    assert len(dm.train_dataloader()) == 3


def test_a_key_the_source_does_not_take_is_one_line(tmp_path):
    with pytest.raises(DataSourceError, match=r"^data: got an unexpected keyword argument 'foo': .* its source Shapes, which takes path, shapes$"):
        DetectionDataModule(Shapes, path=str(tmp_path), foo=1)
    with pytest.raises(DataSourceError, match=r"^data: missing a required argument: 'path': .* its source CocoFolder, which takes path, unit_size$"):
        DetectionDataModule(CocoFolder)
    built = MemorySource("4")
    assert DetectionDataModule(built, num_workers=0).source is built
