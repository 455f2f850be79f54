"""A local COCO-format folder read as Hub-schema rows.

Layout: `{root}/{split}/images/<file_name>` and `{root}/{split}/instances.json` (or the one
`.json` in `{root}/{split}/annotations/`), with boxes `[x, y, w, h]` and arbitrary category ids.
Categories sorted by id get contiguous indices 0..K-1 (labels 1..K). Every annotation is kept,
crowds too: `objects.iscrowd` marks them (the training stream drops them from targets; the
evaluation scores them as crowds) and `objects.area` is the file's `area` (the box area where it
has none).

Checked when the folder is opened (`frcnn.data.coco_problems`): images without their file and
annotations of an unknown category or image id are left out, counted in `CocoFolder.problems`.
"""

import json
from pathlib import Path

import numpy as np

from frcnn.data.coco_problems import without_problems
from frcnn.data.source import Row, RowSource


class CocoFolder:
    """The categories and annotations of one split of a COCO-format folder.

    Attributes:
        category_ids: original COCO category id of each contiguous index (label - 1).
        class_names: name of each contiguous index.
        problems: images and annotations left out, per kind (see the module docstring).
    """

    def __init__(self, root: str | Path, split: str) -> None:
        split_dir = Path(root).expanduser() / split
        annotation_file = split_dir / "instances.json"
        if not annotation_file.exists():
            candidates = sorted((split_dir / "annotations").glob("*.json"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"no {annotation_file} (nor a single annotations/*.json): data.path must hold {split}/instances.json"
                )
            annotation_file = candidates[0]
        coco = json.loads(annotation_file.read_text())
        self.image_dir = split_dir / "images"
        coco, self.problems = without_problems(coco, self.image_dir, str(annotation_file))
        categories = sorted(coco["categories"], key=lambda category: category["id"])
        self.category_ids: list[int] = [category["id"] for category in categories]
        self.class_names: list[str] = [category["name"] for category in categories]
        self.images: list[dict] = sorted(coco["images"], key=lambda image: image["id"])
        self.annotations: dict[int, list[dict]] = {image["id"]: [] for image in self.images}
        for annotation in coco["annotations"]:
            self.annotations[annotation["image_id"]].append(annotation)
        self.index_of = {category_id: index for index, category_id in enumerate(self.category_ids)}

    def source(self, unit_size: int = 64) -> "CocoFolderSource":
        """The split as a `RowSource` of Hub-schema rows in image-id order, `unit_size` images a unit."""
        return CocoFolderSource(self, unit_size)

    def row(self, index: int, with_image: bool = True) -> Row:
        """The Hub-schema row (boxes xyxy) of image `index`; its bytes are read only `with_image`."""
        image = self.images[index]
        objects = self.annotations[image["id"]]
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


class CocoFolderSource(RowSource):
    """A COCO folder's split as units of `unit_size` images (rows in image-id order)."""

    def __init__(self, folder: CocoFolder, unit_size: int) -> None:
        self.folder = folder
        self.description = f"data.path={folder.image_dir.parent.parent} ({folder.image_dir.parent.name})"
        self.revision = None
        self.problems = folder.problems
        sizes = [unit_size] * (len(folder.images) // unit_size)
        if len(folder.images) % unit_size:
            sizes.append(len(folder.images) % unit_size)
        self.unit_sizes = np.asarray(sizes, dtype=np.int64)

    def read_unit(self, unit: int) -> list[Row]:
        start, end = self.unit_starts[unit], self.unit_starts[unit + 1]
        return [self.folder.row(index) for index in range(start, end)]

    def annotations(self) -> list[Row]:
        return [self.folder.row(index, with_image=False) for index in range(len(self.folder.images))]
