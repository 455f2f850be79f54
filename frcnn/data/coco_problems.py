"""The problems of a COCO instances file checked up front: missing image files, unknown ids.

Kinds (`frcnn.data.row_checks`): `missing_image_file` (the image is left out, its path named),
`unknown_category` and `unknown_image` (the annotation is left out, the ids named). Each kind is
announced in one warning line, once per process.
"""

import logging
import os
from collections import Counter
from pathlib import Path

from frcnn.data.row_checks import MISSING_IMAGE_FILE, UNKNOWN_CATEGORY, UNKNOWN_IMAGE

log = logging.getLogger(__name__)
_warned: set[str] = set()


def without_problems(coco: dict, image_dir: Path, source: str) -> tuple[dict, dict[str, int]]:
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
        warn_once(f"{source}: {len(missing)} image(s) have no file, e.g. {image_dir / missing[0]['file_name']}: left out ({MISSING_IMAGE_FILE})")
    for kind, ids, what in ((UNKNOWN_CATEGORY, unknown_categories, "category id"), (UNKNOWN_IMAGE, unknown_images, "image id")):
        if ids:
            named = ", ".join(map(str, sorted(ids)[:5])) + (", ..." if len(ids) > 5 else "")
            warn_once(f"{source}: {problems[kind]} annotation(s) with an unknown {what} ({named}): left out ({kind})")
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


def warn_once(message: str) -> None:
    """Log `message` the first time only: the data module opens the training split twice."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
