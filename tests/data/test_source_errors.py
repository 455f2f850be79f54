"""One-line errors: unreachable Hub, missing folder, parquet in another schema."""

import datasets
import pytest

from frcnn.data.schema import SchemaError
from frcnn.data.source import DataSourceError, open_split

from hub_rows import hub_row


def test_unreachable_hub_says_how_to_go_on(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'detection-datasets/coco' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataSourceError) as error:
        open_split("detection-datasets/coco", "val")
    message = str(error.value)
    assert "\n" not in message and "could not reach the hugging face hub" in message.lower()
    assert "data=shapes" in message and "data.path=" in message and "HF_DATASETS_OFFLINE=1" in message


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist") as error:
        open_split(str(tmp_path / "nowhere"), "val")
    assert "\n" not in str(error.value)


def test_folder_without_the_split(hub_folder):
    with pytest.raises(DataSourceError, match="no parquet files for split 'train'"):
        open_split(str(hub_folder([hub_row(1)])), "train")


def test_parquet_in_another_schema_names_the_missing_column(tmp_path):
    (tmp_path / "val").mkdir()
    row = hub_row(1)
    datasets.Dataset.from_dict({"image_id": [1], "image": [row["image"]["bytes"]]}).to_parquet(str(tmp_path / "val" / "0.parquet"))
    with pytest.raises(SchemaError, match="missing column 'width'") as error:
        open_split(str(tmp_path), "val")
    assert "\n" not in str(error.value)
