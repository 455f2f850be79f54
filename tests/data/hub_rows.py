"""Tiny Hub-schema rows and parquet splits for the data tests (no network)."""

import io
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from frcnn.data.schema import hub_features


def jpeg_bytes(width: int, height: int, seed: int = 0, mode: str = "RGB") -> bytes:
    """An encoded noise image of `width` × `height` in PIL `mode` (JPEG, or PNG for modes JPEG lacks)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    encoded = io.BytesIO()
    image.save(encoded, format="PNG" if mode in ("RGBA", "P") else "JPEG")
    return encoded.getvalue()


def hub_row(image_id: int, width: int = 64, height: int = 48, boxes=(), categories=(), image: bytes | None = None) -> dict:
    """One Hub-schema row; `boxes` xyxy absolute pixels, `categories` 0-based."""
    return {
        "image_id": image_id,
        "image": {"bytes": image if image is not None else jpeg_bytes(width, height, image_id), "path": None},
        "width": width,
        "height": height,
        "objects": {
            "bbox_id": list(range(len(boxes))),
            "category": list(categories),
            "bbox": [list(box) for box in boxes],
            "area": [int((x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in boxes],
        },
    }


def write_split(root: Path, split: str, rows: list[dict], num_shards: int) -> Path:
    """Write `rows` as `root/split/*.parquet` in `num_shards` files carrying the Hub features
    (categories as plain integers when some are outside COCO's 0..79, as a scraped set may hold)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    features = hub_features()
    categories = [category for row in rows if row["objects"] for category in row["objects"]["category"]]
    if any(not 0 <= category < 80 for category in categories):
        features["objects"]["category"] = datasets.List(datasets.Value("int64"))
    for shard, indices in enumerate(np.array_split(np.arange(len(rows)), num_shards)):
        columns = {name: [rows[index][name] for index in indices] for name in features}
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(root / split / f"{shard:03d}.parquet"))
    return root
