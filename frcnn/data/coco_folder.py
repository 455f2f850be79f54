"""A local COCO-format folder read as a stream of Hub-schema rows.

Layout: `{root}/{split}/images/<file_name>` and `{root}/{split}/instances.json` (or the one
`.json` in `{root}/{split}/annotations/`), with boxes `[x, y, w, h]` and arbitrary category ids.
Categories sorted by id get contiguous indices 0..K-1 (labels 1..K); an annotation with an id
outside `categories` gets index -1. Every annotation is kept, crowds too: `objects.iscrowd` marks
them (the training stream drops them from targets; the evaluation scores them as crowds) and
`objects.area` is the file's `area` (the box area where it has none).
"""

import json
from collections.abc import Iterator
from pathlib import Path

import datasets

from frcnn.data.schema import hub_features

class CocoFolder:
    """The categories and annotations of one split of a COCO-format folder.

    Attributes:
        category_ids: original COCO category id of each contiguous index (label - 1).
        class_names: name of each contiguous index.
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
        categories = sorted(coco["categories"], key=lambda category: category["id"])
        self.category_ids: list[int] = [category["id"] for category in categories]
        self.class_names: list[str] = [category["name"] for category in categories]
        self.images: list[dict] = sorted(coco["images"], key=lambda image: image["id"])
        self.annotations: dict[int, list[dict]] = {image["id"]: [] for image in self.images}
        for annotation in coco["annotations"]:
            self.annotations[annotation["image_id"]].append(annotation)

    def annotation_rows(self) -> Iterator[dict]:
        """Hub-schema rows without `image`, in image-id order (the evaluation's ground truth)."""
        index_of = {category_id: index for index, category_id in enumerate(self.category_ids)}
        return _annotation_rows(self.images, self.annotations, index_of)

    def rows(self) -> datasets.IterableDataset:
        """The split as an `IterableDataset` of Hub-schema rows in image-id order, one shard per image."""
        index_of = {category_id: index for index, category_id in enumerate(self.category_ids)}
        return datasets.IterableDataset.from_generator(
            _generate_rows,
            features=hub_features(self.class_names, coco_folder=True),
            gen_kwargs={
                "images": self.images,  # a list: `datasets` makes each image a shard
                "annotations": self.annotations,
                "image_dir": str(self.image_dir),
                "index_of": index_of,
            },
        ).cast_column("image", datasets.Image(decode=False))


def _annotation_rows(images: list[dict], annotations: dict[int, list[dict]], index_of: dict[int, int]) -> Iterator[dict]:
    """Hub-schema rows of `images` without `image`: boxes xyxy, the file's areas and crowd flags."""
    for image in images:
        objects = annotations[image["id"]]
        boxes = [annotation["bbox"] for annotation in objects]
        yield {
            "image_id": image["id"],
            "width": image["width"],
            "height": image["height"],
            "objects": {
                "bbox_id": [annotation["id"] for annotation in objects],
                "category": [index_of.get(annotation["category_id"], -1) for annotation in objects],
                "bbox": [[x, y, x + w, y + h] for x, y, w, h in boxes],
                "area": [annotation.get("area", w * h) for annotation, (_, _, w, h) in zip(objects, boxes)],
                "iscrowd": [int(annotation.get("iscrowd", 0)) for annotation in objects],
            },
        }


def _generate_rows(images: list[dict], annotations: dict[int, list[dict]], image_dir: str, index_of: dict[int, int]):
    """Hub-schema rows (boxes xyxy) of `images`; image bytes are read here, decoded by the stream."""
    for image, row in zip(images, _annotation_rows(images, annotations, index_of)):
        image_file = Path(image_dir) / image["file_name"]
        # A missing file becomes empty bytes: skipped and counted as corrupt, like a truncated one.
        image_bytes = image_file.read_bytes() if image_file.exists() else b""
        yield {**row, "image": {"bytes": image_bytes, "path": None}}
