"""A local COCO-format folder read as a stream of Hub-schema rows.

Layout: `{root}/{split}/images/<file_name>` and `{root}/{split}/instances.json` (or the one
`.json` in `{root}/{split}/annotations/`), with boxes `[x, y, w, h]` and arbitrary category ids.
Categories sorted by id get contiguous indices 0..K-1 (labels 1..K); `iscrowd` boxes are dropped.

Checked when the folder is opened (`frcnn.data.coco_problems`): images without their file and
annotations of an unknown category or image id are left out, counted in `CocoFolder.problems`.
"""

import json
from pathlib import Path

import datasets

from frcnn.data.coco_problems import without_problems
from frcnn.data.schema import hub_features

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
            if not annotation.get("iscrowd", 0):
                self.annotations[annotation["image_id"]].append(annotation)

    def rows(self) -> datasets.IterableDataset:
        """The split as an `IterableDataset` of Hub-schema rows in image-id order, one shard per image."""
        index_of = {category_id: index for index, category_id in enumerate(self.category_ids)}
        return datasets.IterableDataset.from_generator(
            _generate_rows,
            features=hub_features(self.class_names),
            gen_kwargs={
                "images": self.images,  # a list: `datasets` makes each image a shard
                "annotations": self.annotations,
                "image_dir": str(self.image_dir),
                "index_of": index_of,
            },
        ).cast_column("image", datasets.Image(decode=False))


def _generate_rows(images: list[dict], annotations: dict[int, list[dict]], image_dir: str, index_of: dict[int, int]):
    """Hub-schema rows (boxes xyxy) of `images`; image bytes are read here, decoded by the stream."""
    for image in images:
        objects = annotations[image["id"]]
        image_file = Path(image_dir) / image["file_name"]
        # A missing file becomes empty bytes: skipped and counted as corrupt, like a truncated one.
        image_bytes = image_file.read_bytes() if image_file.exists() else b""
        yield {
            "image_id": image["id"],
            "image": {"bytes": image_bytes, "path": None},
            "width": image["width"],
            "height": image["height"],
            "objects": {
                "bbox_id": [annotation["id"] for annotation in objects],
                "category": [index_of[annotation["category_id"]] for annotation in objects],
                "bbox": [[x, y, x + w, y + h] for x, y, w, h in (annotation["bbox"] for annotation in objects)],
                "area": [int(annotation["bbox"][2] * annotation["bbox"][3]) for annotation in objects],
            },
        }
