"""Opening a split: the Hub path is the local path on another filesystem; one-line errors."""

import time
import datasets
import fsspec
import pytest

from frcnn.data import source as source_module
from frcnn.data.schema import SchemaError
from frcnn.data.source import DataSourceError, open_split

from hub_rows import hub_row


def test_a_hub_id_reads_through_the_same_code_pinned_to_a_commit(hub_folder, boxed_rows, monkeypatch):
    """With the Hub's filesystem swapped for the local one, a dataset id goes through exactly the
    code that reads the Hub: file discovery, footers, row groups; the commit is the revision."""
    folder = hub_folder(boxed_rows, num_shards=3)
    asked = {}

    def local_hub(repo_id, revision):
        asked.update(repo_id=repo_id, revision=revision)
        return fsspec.filesystem("file"), str(folder), "c0ffee"

    monkeypatch.setattr(source_module, "_hub_filesystem", local_hub)
    split = open_split("detection-datasets/coco", "val", revision="v1.0")
    assert asked == {"repo_id": "detection-datasets/coco", "revision": "v1.0"}
    assert split.revision == "c0ffee" and len(split.files) == 3
    assert [row["image_id"] for row in split.annotations()] == [row["image_id"] for row in boxed_rows]
    assert split.read_unit(0)[0]["image"]["bytes"] == boxed_rows[0]["image"]["bytes"]


def test_unreachable_hub_says_how_to_go_on(monkeypatch):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    with pytest.raises(DataSourceError) as error:
        open_split("detection-datasets/coco", "val")
    message = str(error.value)
    assert "\n" not in message and "could not reach the hugging face hub" in message.lower()
    assert "data=shapes" in message and "data.path=" in message


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist") as error:
        open_split(str(tmp_path / "nowhere"), "val")
    assert "\n" not in str(error.value)


def test_folder_without_the_split(hub_folder):
    with pytest.raises(DataSourceError, match="no parquet files for split 'train'"):
        open_split(str(hub_folder([hub_row(1)])), "train")


@pytest.mark.parametrize("damage", ["truncated", "not_parquet"])
def test_a_broken_parquet_file_is_named_when_the_split_opens(hub_folder, boxed_rows, damage):
    folder = hub_folder(boxed_rows, num_shards=2)
    broken = folder / "val" / "001.parquet"
    broken.write_bytes(broken.read_bytes()[:300] if damage == "truncated" else b"<html>not found</html>")
    with pytest.raises(DataSourceError, match="001.parquet is not a readable parquet file") as error:
        open_split(str(folder), "val")
    assert "\n" not in str(error.value)


def test_parquet_in_another_schema_names_the_missing_column(tmp_path):
    (tmp_path / "val").mkdir()
    row = hub_row(1)
    datasets.Dataset.from_dict({"image_id": [1], "image": [row["image"]["bytes"]]}).to_parquet(str(tmp_path / "val" / "0.parquet"))
    with pytest.raises(SchemaError, match="missing column 'width'") as error:
        open_split(str(tmp_path), "val")
    assert "\n" not in str(error.value)


class FlakyFilesystem:
    """The local filesystem, except that the first `failures` opens raise a network error."""

    def __init__(self, failures: int) -> None:
        self.local, self.failures, self.opens = fsspec.filesystem("file"), failures, 0

    def __getattr__(self, name):
        return getattr(self.local, name)

    def open(self, path, mode="rb"):
        self.opens += 1
        if self.opens <= self.failures:
            raise ConnectionError(f"simulated read error {self.opens}")
        return self.local.open(path, mode)


@pytest.mark.parametrize("failures", [2, 5])
def test_read_errors_are_retried_then_named_in_one_line(hub_folder, boxed_rows, monkeypatch, failures):
    folder = hub_folder(boxed_rows)
    flaky = FlakyFilesystem(failures)
    monkeypatch.setattr(source_module, "_hub_filesystem", lambda repo_id, revision: (flaky, str(folder), "c0ffee"))
    if failures <= 3:  # within read_retries=3: the split opens and reads
        split = open_split("detection-datasets/coco", "val", read_retries=3, retry_interval_s=0.0)
        assert len(split.read_unit(0)) == len(boxed_rows) and flaky.opens == failures + 1
        return
    with pytest.raises(DataSourceError, match=r"000.parquet failed 4 times \(simulated read error 4\)") as error:
        open_split("detection-datasets/coco", "val", read_retries=3, retry_interval_s=0.0)
    assert "\n" not in str(error.value) and "data.read_retries" in str(error.value)


def test_a_local_file_with_corrupt_pages_is_named_corrupt_at_once(hub_folder, boxed_rows):
    """Footer intact, a page header garbled (pyarrow raises OSError, as a network read would):
    on the local disk there is nothing to retry."""
    folder = hub_folder(boxed_rows)
    file = next((folder / "val").glob("*.parquet"))
    data = bytearray(file.read_bytes())
    data[8:72] = bytes(b ^ 0xFF for b in data[8:72])
    file.write_bytes(bytes(data))
    split = open_split(str(folder), "val", read_retries=20, retry_interval_s=5.0)  # the footer reads
    tic = time.perf_counter()
    with pytest.raises(DataSourceError, match=rf"{file.name} is corrupt or unreadable \(.*\); delete it or download it again") as error:
        split.read_unit(0)
    assert time.perf_counter() - tic < 2.0 and "\n" not in str(error.value)
