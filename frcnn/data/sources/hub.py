"""`HubDataset`: COCO in the Hub schema (`detection-datasets/coco`), from the Hugging Face Hub
or a local folder of the same parquet files — both read by `frcnn.data.source.open_split`."""

from __future__ import annotations

from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.source import DataSource, ParquetSource, open_split


class HubDataset(DataSource):
    """Hub-schema parquet splits whose 0-based `category` follows COCO's 80 classes.

    Args:
        path: a Hub dataset id, or a local folder of `{split}/*.parquet` (or a Hub snapshot).
        revision: the Hub dataset's branch, tag or commit (None: main), resolved to one commit.
        read_retries, retry_interval_s: how often and how far apart a failed read is retried.
    """

    def __init__(self, path: str, revision: str | None = None, read_retries: int = 20, retry_interval_s: float = 5.0) -> None:
        self.path, self.revision = path, revision
        self.read_retries, self.retry_interval_s = read_retries, retry_interval_s

    def categories(self, split: str) -> tuple[list[str], list[int]]:
        return list(COCO_CLASSES), list(COCO_CATEGORY_IDS)

    def open(self, split: str) -> ParquetSource:
        return open_split(self.path, split, self.revision, self.read_retries, self.retry_interval_s)
