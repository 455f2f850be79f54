"""The row schema shared by every source: the Hub's `detection-datasets/coco` features.

Each row: `image_id` int64, `image` (encoded bytes), `width`/`height` int64, and `objects`, a struct of lists with one entry per object:
{`bbox_id` int64, `category` ClassLabel (0-based), `bbox` [x_min, y_min, x_max, y_max] absolute
pixels, `area`}. The Hub has no `iscrowd` field and integer areas; a COCO folder's rows
(`hub_features(..., coco_folder=True)`) add `iscrowd` (0/1 per object) and carry the float
areas of its instances.json. A VOC devkit's rows (`sources/voc.py`) add `difficult` (0/1 per
object): scored as ignored, never trained on, like `iscrowd`.
"""

from collections.abc import Sequence

import datasets
import pyarrow as pa

from frcnn.data.coco_classes import COCO_CLASSES

REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "image", "width", "height", "objects")
REQUIRED_OBJECT_FIELDS: tuple[str, ...] = ("category", "bbox")
# What the stream reads of a row, and what indexing and evaluation read (no image bytes).
ROW_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS
ANNOTATION_COLUMNS: tuple[str, ...] = ("image_id", "width", "height", "objects")


class SchemaError(ValueError):
    """A data source whose columns do not follow the Hub schema."""


def hub_features(class_names: Sequence[str] = COCO_CLASSES, *, coco_folder: bool = False) -> datasets.Features:
    """The Hub schema's `datasets.Features`, with `class_names` as the category `ClassLabel`;
    `coco_folder`: float `area`s and an `objects.iscrowd` list."""
    objects = {
        "bbox_id": datasets.List(datasets.Value("int64")),
        "category": datasets.List(datasets.ClassLabel(names=list(class_names))),
        "bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
        "area": datasets.List(datasets.Value("float64" if coco_folder else "int64")),
    }
    if coco_folder:
        objects["iscrowd"] = datasets.List(datasets.Value("int64"))
    return datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "image": datasets.Image(),
            "width": datasets.Value("int64"),
            "height": datasets.Value("int64"),
            # A struct of lists, one entry per object (the Hub's `Sequence({...})`).
            "objects": objects,
        }
    )


def check_arrow_schema(schema: pa.Schema, source: str) -> None:
    """Raise `SchemaError` naming the first column of the Hub schema that a parquet file lacks."""
    for column in REQUIRED_COLUMNS:
        if column not in schema.names:
            raise SchemaError(f"{source}: missing column {column!r}; expected the Hub schema {REQUIRED_COLUMNS}")
    objects = schema.field("objects").type
    for field in REQUIRED_OBJECT_FIELDS:
        if not pa.types.is_struct(objects) or objects.get_field_index(field) < 0:
            raise SchemaError(f"{source}: missing column 'objects.{field}'; expected the Hub schema")
