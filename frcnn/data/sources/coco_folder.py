"""`CocoFolder`: a local COCO-format folder read as Hub-schema rows.

Layout: `{root}/{split}/images/<file_name>` and `{root}/{split}/instances.json` (or the one
`.json` in `{root}/{split}/annotations/`), with boxes `[x, y, w, h]` and arbitrary category ids.
Categories sorted by id get contiguous indices 0..K-1 (labels 1..K). Every annotation is kept,
crowds too: `objects.iscrowd` marks them (the training stream drops them from targets; the
evaluation scores them as crowds) and `objects.area` is the file's `area` (the box area where it
has none).

Checked when the folder is opened (`frcnn.data.coco_problems`): images without their file and
annotations of an unknown category or image id are left out, counted in `CocoFolderSplit.problems`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from frcnn.data.coco_problems import without_problems
from frcnn.data.source import DataSource, DataSourceError, Row, RowSource


class CocoFolder(DataSource):
    """The splits of the COCO-format folder `path`; categories sorted by id, as the training split
    declares them. Each split's annotation file is read once (a `CocoFolderSplit`), when its
    categories or its rows are first asked for.

    Args:
        path: the folder holding `{split}/images/` and `{split}/instances.json`.
        unit_size: images read at once (a unit of the stream).
    """

    def __init__(self, path: str | Path, unit_size: int = 64) -> None:
        self.path, self.unit_size = Path(path).expanduser(), unit_size
        self._splits: dict[str, CocoFolderSplit] = {}

    def categories(self, split: str) -> tuple[list[str], list[int]]:
        folder = self.open(split)
        return folder.class_names, folder.category_ids

    def open(self, split: str) -> CocoFolderSplit:
        if split not in self._splits:
            self._splits[split] = CocoFolderSplit(self.path, split, self.unit_size)
        return self._splits[split]


class CocoFolderSplit(RowSource):
    """One split of a COCO-format folder as units of `unit_size` images (rows in image-id order).

    Attributes:
        category_ids: original COCO category id of each contiguous index (label - 1).
        class_names: name of each contiguous index.
        problems: images and annotations left out, per kind (see the module docstring).
    """

    def __init__(self, root: str | Path, split: str, unit_size: int = 64) -> None:
        split_dir = Path(root).expanduser() / split
        annotation_file = split_dir / "instances.json"
        if not annotation_file.exists():
            candidates = sorted((split_dir / "annotations").glob("*.json"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"no {annotation_file} (nor a single annotations/*.json): data.path must hold {split}/instances.json"
                )
            annotation_file = candidates[0]
        try:
            coco = json.loads(annotation_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataSourceError(f"{annotation_file} is not a JSON file ({error}): fix or replace this COCO instances file") from None
        if not isinstance(coco, dict) or not all(isinstance(coco.get(key), list) for key in ("images", "annotations", "categories")):
            raise DataSourceError(f"{annotation_file} is not a COCO instances file: it needs the lists images, annotations, categories")
        self.image_dir = split_dir / "images"
        self.description, self.revision = f"data.path={root} ({split})", None
        coco, self.problems = without_problems(coco, self.image_dir, str(annotation_file))
        categories = sorted(coco["categories"], key=lambda category: category["id"])
        self.category_ids: list[int] = [category["id"] for category in categories]
        self.class_names: list[str] = [category["name"] for category in categories]
        self.images: list[dict] = sorted(coco["images"], key=lambda image: image["id"])
        self.annotations_of: dict[int, list[dict]] = {image["id"]: [] for image in self.images}
        for annotation in coco["annotations"]:
            self.annotations_of[annotation["image_id"]].append(annotation)
        self.index_of = {category_id: index for index, category_id in enumerate(self.category_ids)}
        sizes = [unit_size] * (len(self.images) // unit_size)
        if len(self.images) % unit_size:
            sizes.append(len(self.images) % unit_size)
        self.unit_sizes = np.asarray(sizes, dtype=np.int64)

    def read_unit(self, unit: int) -> list[Row]:
        start, end = self.unit_starts[unit], self.unit_starts[unit + 1]
        return [self.row(index) for index in range(start, end)]

    def annotations(self) -> list[Row]:
        return [self.row(index, with_image=False) for index in range(len(self.images))]

    def row(self, index: int, with_image: bool = True) -> Row:
        """The Hub-schema row (boxes xyxy) of image `index`; its bytes are read only `with_image`."""
        image = self.images[index]
        objects = self.annotations_of[image["id"]]
        boxes = [annotation["bbox"] for annotation in objects]
        row = {
            "image_id": image["id"],
            "width": image["width"],
            "height": image["height"],
            "objects": {
                "bbox_id": [annotation["id"] for annotation in objects],
                "category": [self.index_of[annotation["category_id"]] for annotation in objects],
                "bbox": [[x, y, x + w, y + h] for x, y, w, h in boxes],
                "area": [annotation.get("area", w * h) for annotation, (_, _, w, h) in zip(objects, boxes)],
                "iscrowd": [int(annotation.get("iscrowd", 0)) for annotation in objects],
            },
        }
        if with_image:
            image_file = self.image_dir / image["file_name"]
            # A file gone since the folder was opened becomes empty bytes: skipped as undecodable.
            row["image"] = {"bytes": image_file.read_bytes() if image_file.is_file() else b"", "path": None}
        return row
