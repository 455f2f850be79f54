"""A small VOC devkit written by the tests: both years, a difficult object, and every bad case."""

from pathlib import Path

import numpy as np
from PIL import Image

# name -> (year, (width, height), objects: (class, xmin, ymin, xmax, ymax, difficult) in VOC's
# 1-based inclusive pixels); None: no annotation file; a str: the annotation file's text.
IMAGES = {
    "000001": (2007, (96, 64), [("cat", 1, 1, 40, 30, 0), ("dog", 50, 10, 90, 60, 0)]),
    "000002": (2007, (64, 80), [("cat", 11, 21, 50, 70, 1), ("cat", 5, 5, 30, 30, 0)]),
    "000003": (2007, (64, 64), None),                                      # missing_annotation_file
    "000004": (2007, (64, 64), [("dog", 1, 1, 20, 20, 0)]),                # missing_image_file
    "000005": (2007, (64, 64), "<annotation><object>"),                    # malformed_annotation_file
    "000006": (2007, (80, 64), [("unicorn", 1, 1, 10, 10, 0), ("bird", 20, 20, 60, 50, 0)]),  # unknown_category
    # Large dogs: an untrained model's boxes hit some of them.
    "000010": (2007, (96, 72), [("dog", 4, 3, 90, 72, 0), ("person", 62, 5, 90, 70, 1)]),
    "000011": (2007, (72, 64), [("dog", 3, 2, 70, 60, 0), ("dog", 100, 80, 120, 90, 0)]),  # box_outside_image
    "2008_000001": (2012, (88, 64), [("car", 2, 3, 80, 60, 0)]),
    "2008_000002": (2012, (64, 64), [("car", "x", 3, 40, 40, 0)]),       # malformed: a coordinate not a number
}
IMAGE_SETS = {
    (2007, "trainval"): ["000001", "000002", "000003", "000004", "000005", "000006", "000001"],  # 000001 twice
    (2007, "test"): ["000010", "000011"],
    (2012, "trainval"): ["2008_000001", "2008_000002"],
}


def _xml(width: int, height: int, objects: list) -> str:
    body = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, x1, y1, x2, y2, difficult in objects
    )
    return f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>{body}</annotation>"


def write_devkit(root: Path) -> Path:
    """`root/VOCdevkit` with VOC2007 and VOC2012 as unpacked; images of random pixels."""
    devkit = root / "VOCdevkit"
    rng = np.random.default_rng(0)
    for year in (2007, 2012):
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (devkit / f"VOC{year}" / folder).mkdir(parents=True, exist_ok=True)
    for name, (year, (width, height), objects) in IMAGES.items():
        folder = devkit / f"VOC{year}"
        if name != "000004":
            pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "JPEGImages" / f"{name}.jpg")
        if isinstance(objects, str):
            (folder / "Annotations" / f"{name}.xml").write_text(objects)
        elif objects is not None:
            (folder / "Annotations" / f"{name}.xml").write_text(_xml(width, height, objects))
    for (year, image_set), names in IMAGE_SETS.items():
        (devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(names) + "\n")
    return devkit
