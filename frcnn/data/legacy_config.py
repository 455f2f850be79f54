"""The data config of a checkpoint written before data sources were Hydra nodes, in today's layout.

Then `data.source` was a string, `hub | shapes | coco_folder`, switched on inside the data module,
and every source was given `read_retries`/`retry_interval_s`. Now `data.source` is a node naming
the source class (`conf/data/*.yaml`); the other keys are where they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SOURCE_TARGETS = {
    "hub": "frcnn.data.sources.hub.HubDataset",
    "shapes": "frcnn.data.sources.shapes.Shapes",
    "coco_folder": "frcnn.data.sources.coco_folder.CocoFolder",
}
_PARQUET_ONLY = ("read_retries", "retry_interval_s")  # options only the Hub source still takes


def current_data_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (a checkpoint's `cfg["data"]`) with a `source:` node; a current config is returned as it is.

    Raises:
        ValueError: a `source` string that was never a source (one line).
    """
    kind = data.get("source")
    if not isinstance(kind, str):
        return dict(data)
    if kind not in SOURCE_TARGETS:
        raise ValueError(f"data.source={kind!r} in the checkpoint's config: expected one of {', '.join(SOURCE_TARGETS)}")
    upgraded = {key: value for key, value in data.items() if kind == "hub" or key not in _PARQUET_ONLY}
    upgraded["source"] = {"_target_": SOURCE_TARGETS[kind], "_partial_": True}
    return upgraded
