"""A parquet split in the Hub schema with one row of every row-level problem beside good rows.

`planted_rows()` gives the rows and, per image_id, what must happen to each: the kind that skips
it, or the kinds it is counted under while kept. Categories are stored as plain int64 (not the
Hub's ClassLabel, which refuses 80 and null when written): what a user's own parquet may hold.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from frcnn.data import row_checks as kinds
from frcnn.data.schema import hub_features
from tests.data.hub_rows import hub_row, jpeg_bytes

FIRST_ID = 9_000_001
BOX = (4.0, 6.0, 40.0, 30.0)


def _png(image: Image.Image) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return encoded.getvalue()


def sixteen_bit_png(width: int = 64, height: int = 48) -> tuple[bytes, np.ndarray]:
    """A 16-bit grayscale PNG (PIL mode I;16) spanning 0..65535, and its values (H, W)."""
    values = np.linspace(0, 65535, width * height).round().astype(np.uint16).reshape(height, width)
    return _png(Image.fromarray(values)), values


def planted_rows(first_id: int = FIRST_ID) -> tuple[list[dict], dict[int, tuple[str | None, dict[str, int]]]]:
    """(rows, expected): expected[image_id] = (skip kind or None, counts of the kept row)."""
    cases: list[tuple[dict, str | None, dict[str, int]]] = []

    def add(skip: str | None = None, counts: dict[str, int] | None = None, **changes) -> None:
        row = hub_row(first_id + len(cases), boxes=[BOX], categories=[2])
        objects = changes.pop("objects", {})
        row.update(changes)
        if objects is None:
            row["objects"] = None
        else:
            row["objects"].update(objects)
        cases.append((row, skip, counts or {}))

    add()  # a good row
    add(image={"bytes": b"this is not an image", "path": None}, skip=kinds.UNDECODABLE_IMAGE)
    add(image={"bytes": jpeg_bytes(64, 48)[:300], "path": None}, skip=kinds.UNDECODABLE_IMAGE)  # truncated
    add(image={"bytes": _png(Image.new("1", (16000, 12000))), "path": None}, width=16000, height=12000,
        skip=kinds.TOO_MANY_PIXELS)  # fmt: skip
    add(image={"bytes": sixteen_bit_png()[0], "path": None})  # kept, scaled to 0..255
    add(objects=None, skip=kinds.NULL_OBJECTS)
    add(objects={"category": [None]}, skip=kinds.MALFORMED_OBJECTS)
    add(objects={"category": [2, 3]}, skip=kinds.MALFORMED_OBJECTS)  # 2 categories, 1 box
    add(objects={"category": [80]}, skip=kinds.LABEL_OUT_OF_RANGE)
    add(objects={"category": [-1]}, skip=kinds.LABEL_OUT_OF_RANGE)
    add(objects={"bbox": [[math.nan, 6.0, 40.0, 30.0]]}, skip=kinds.NONFINITE_BOX)
    add(objects={"bbox": [[4.0, 6.0, math.inf, 30.0]]}, skip=kinds.NONFINITE_BOX)
    add(width=48, height=64, skip=kinds.SIZE_MISMATCH)  # transposed columns
    add(width=128, height=96, objects={"bbox": [[8.0, 12.0, 80.0, 60.0]]}, counts={kinds.SIZE_RESCALED: 1})
    add(objects={"bbox": [BOX, [30.0, 6.0, 20.0, 30.0], [5.0, 5.0, 5.0, 9.0]], "category": [2, 2, 2]},
        counts={kinds.DEGENERATE_BOX: 2})  # fmt: skip
    add(objects={"bbox": [BOX, [70.0, 6.0, 90.0, 30.0]], "category": [2, 2]}, counts={kinds.BOX_OUTSIDE_IMAGE: 1})
    add()  # a good row
    rows = [row for row, _, _ in cases]
    return rows, {row["image_id"]: (skip, counts) for row, skip, counts in cases}


def expected_counts(expected: dict[int, tuple[str | None, dict[str, int]]]) -> Counter:
    """Total count per kind over the planted rows (skips and kept rows' counts)."""
    total: Counter = Counter()
    for skip, counts in expected.values():
        total.update({skip: 1} if skip else counts)
    return total


def write_bad_split(root: Path, split: str, rows: list[dict]) -> Path:
    """`rows` as `root/split/000.parquet` in the Hub schema, with int64 categories."""
    features = hub_features()
    features["objects"]["category"] = datasets.List(datasets.Value("int64"))
    (root / split).mkdir(parents=True, exist_ok=True)
    columns = {name: [row[name] for row in rows] for name in features}
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(root / split / "000.parquet"))
    return root
