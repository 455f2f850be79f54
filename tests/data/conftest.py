"""Fixtures: tiny Hub-schema parquet folders written into tmp_path."""

from collections.abc import Callable
from pathlib import Path

import pytest

from hub_rows import hub_row, write_split


@pytest.fixture
def hub_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `hub_folder(rows, num_shards, split="val")` → a local Hub-schema folder."""

    def make(rows: list[dict], num_shards: int = 1, split: str = "val") -> Path:
        return write_split(tmp_path / f"hub-{split}-{num_shards}", split, rows, num_shards)

    return make


@pytest.fixture
def boxed_rows() -> list[dict]:
    """12 rows of varied sizes, each with one box, so no row is filtered out."""
    return [
        hub_row(image_id, 40 + 4 * image_id, 60 - 2 * image_id, boxes=[(2.0, 3.0, 20.5, 25.25)], categories=[image_id % 80])
        for image_id in range(1, 13)
    ]
