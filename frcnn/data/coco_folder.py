"""A local COCO-format folder read as a stream of Hub-schema rows.

Layout: `{root}/{split}/images/<file_name>` and `{root}/{split}/instances.json` (or the one
`.json` in `{root}/{split}/annotations/`), with boxes `[x, y, w, h]` and arbitrary category ids.
Categories sorted by id get contiguous indices 0..K-1 (labels 1..K); `iscrowd` boxes are dropped.

Checked when the folder is opened (`CocoFolder.problems`, one warning line per kind): an image
whose file is missing is left out (`missing_image_file`); an annotation whose category id is not
in `categories` (`unknown_category`) or whose image id is not in `images` (`unknown_image`) is
left out.
"""

import json
import logging
import os
from collections import Counter
from pathlib import Path

import datasets

from frcnn.data.row_checks import MISSING_IMAGE_FILE, UNKNOWN_CATEGORY, UNKNOWN_IMAGE
from frcnn.data.schema import hub_features

log = logging.getLogger(__name__)

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
        coco, self.problems = _without_problems(coco, self.image_dir, f"{annotation_file}")
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


def _without_problems(coco: dict, image_dir: Path, source: str) -> tuple[dict, dict[str, int]]:
    """`coco` without images whose file is missing and annotations of an unknown category or
    image; the count per kind, each kind announced in one warning line with an example."""
    listed = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    missing = [
        image for image in coco["images"]
        if image["file_name"] not in listed and not (image_dir / image["file_name"]).is_file()
    ]  # fmt: skip
    category_ids = {category["id"] for category in coco["categories"]}
    image_ids = {image["id"] for image in coco["images"]}
    unknown_categories = Counter(a["category_id"] for a in coco["annotations"] if a["category_id"] not in category_ids)
    unknown_images = Counter(a["image_id"] for a in coco["annotations"] if a["image_id"] not in image_ids)
    problems = {
        MISSING_IMAGE_FILE: len(missing),
        UNKNOWN_CATEGORY: sum(unknown_categories.values()),
        UNKNOWN_IMAGE: sum(unknown_images.values()),
    }
    if missing:
        _warn_once(f"{source}: {len(missing)} image(s) have no file, e.g. {image_dir / missing[0]['file_name']}: left out ({MISSING_IMAGE_FILE})")
    for kind, ids, what in ((UNKNOWN_CATEGORY, unknown_categories, "category id"), (UNKNOWN_IMAGE, unknown_images, "image id")):
        if ids:
            named = ", ".join(map(str, sorted(ids)[:5])) + (", ..." if len(ids) > 5 else "")
            _warn_once(f"{source}: {problems[kind]} annotation(s) with an unknown {what} ({named}): left out ({kind})")
    if not any(problems.values()):
        return coco, problems
    missing_ids = {image["id"] for image in missing}
    kept = {
        **coco,
        "images": [image for image in coco["images"] if image["id"] not in missing_ids],
        "annotations": [
            a for a in coco["annotations"]
            if a["category_id"] in category_ids and a["image_id"] in image_ids and a["image_id"] not in missing_ids
        ],
    }  # fmt: skip
    return kept, problems


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log `message` the first time only: the data module opens the training split twice."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


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
