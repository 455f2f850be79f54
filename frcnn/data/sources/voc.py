"""`VOCDevkit`: Pascal VOC read as it is unpacked, as Hub-schema rows (docs/voc.md).

Layout: `{path}/VOC{year}/ImageSets/Main/{set}.txt` (one image name a line),
`{path}/VOC{year}/Annotations/{name}.xml` and `{path}/VOC{year}/JPEGImages/{name}.jpg`. The
`train` split is the images of `train_sets` ([year, set] pairs, e.g. 2007 trainval + 2012
trainval), the `val` split those of `val_sets` (2007 test); an image listed twice is read once.

Rows: the 20 classes in VOC's order (`category` 0..19, category ids 1..20). Boxes: VOC's are
1-based inclusive pixel indices, so (1, 1, W, H) covers a W x H image; as Detectron2's
`pascal_voc.py` they become `xyxy` pixel coordinates by `x1 - 1, y1 - 1` (x2, y2 unchanged):
(0, 0, W, H). `difficult` becomes `objects.difficult`: scored as ignored, never trained on
(`frcnn.data.row_checks`, `frcnn.evaluation.ground_truth`); `truncated` and `pose` are not read.
Image ids: the name's digits (`000005` -> 5, `2008_000123` -> 2008000123); when some name is not
of that form or two names give one number, the split's 1-based positions instead (logged).
`image_name(image_id)` gives the name back (for the devkit's results files).

Checked when a split is opened, left out and counted in `VOCSplit.problems`, one warning line per
kind (`frcnn.data.row_checks`): `missing_annotation_file`, `malformed_annotation_file`,
`missing_image_file` (the image), `unknown_category` (the object). A box outside the image goes
through the row checks like any other (clipped; dropped and counted when nothing is left).
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frcnn.data.coco_problems import warn_once
from frcnn.data.row_checks import MALFORMED_ANNOTATION_FILE, MISSING_ANNOTATION_FILE, MISSING_IMAGE_FILE, UNKNOWN_CATEGORY
from frcnn.data.source import DataSource, DataSourceError, Row, RowSource

log = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_NUMERIC_NAME = re.compile(r"\d+(_\d+)?")


class VOCDevkit(DataSource):
    """The `train` and `val` splits of the VOC devkit folder `path`.

    Args:
        path: the `VOCdevkit` folder holding `VOC2007/`, `VOC2012/`, ...
        train_sets, val_sets: the (year, image set) pairs of each split.
        unit_size: images read at once (a unit of the stream).
    """

    def __init__(
        self,
        path: str | Path,
        train_sets: Sequence[Sequence[Any]] = ((2007, "trainval"), (2012, "trainval")),
        val_sets: Sequence[Sequence[Any]] = ((2007, "test"),),
        unit_size: int = 64,
    ) -> None:
        self.path, self.unit_size = Path(path).expanduser(), unit_size
        self.sets = {"train": [tuple(pair) for pair in train_sets], "val": [tuple(pair) for pair in val_sets]}
        self._splits: dict[str, VOCSplit] = {}

    def categories(self, split: str) -> tuple[list[str], list[int]]:
        return list(VOC_CLASSES), list(range(1, len(VOC_CLASSES) + 1))

    def open(self, split: str) -> VOCSplit:
        if split not in self.sets:
            raise DataSourceError(
                f"a VOC devkit has the splits 'train' (data.train_sets) and 'val' (data.val_sets), not {split!r}"
            )
        if split not in self._splits:
            self._splits[split] = VOCSplit(self.path, self.sets[split], f"data.path={self.path} ({split})", self.unit_size)
        return self._splits[split]


class VOCSplit(RowSource):
    """The images of some (year, image set) pairs of a devkit, as units of `unit_size` rows.

    Attributes:
        sets: the (year, image set) pairs read.
        image_ids (list[int]): the rows' image ids, in row order.
        problems: images and objects left out, per kind (see the module docstring).
    """

    def __init__(self, root: Path, sets: Sequence[tuple[Any, str]], description: str, unit_size: int = 64) -> None:
        self.description, self.revision, self.sets = description, None, list(sets)
        listed = dict.fromkeys((str(year), name) for year, image_set in sets for name in _image_set(root, year, image_set))
        jpegs = {year: _listing(root / f"VOC{year}" / "JPEGImages") for year in {year for year, _ in listed}}
        problems: Counter[str] = Counter()
        examples: dict[str, str] = {}
        names: list[str] = []
        self.files: list[Path] = []
        self._rows: list[Row] = []
        for year, name in listed:
            xml_file = f"VOC{year}/Annotations/{name}.xml"
            try:
                row, unknown = _parse(root / xml_file)
            except FileNotFoundError:
                problems[MISSING_ANNOTATION_FILE] += 1
                examples.setdefault(MISSING_ANNOTATION_FILE, xml_file)
                continue
            except ValueError as error:
                problems[MALFORMED_ANNOTATION_FILE] += 1
                examples.setdefault(MALFORMED_ANNOTATION_FILE, f"{xml_file} ({error})")
                continue
            if f"{name}.jpg" not in jpegs[year]:
                problems[MISSING_IMAGE_FILE] += 1
                examples.setdefault(MISSING_IMAGE_FILE, f"VOC{year}/JPEGImages/{name}.jpg")
                continue
            if unknown:
                problems[UNKNOWN_CATEGORY] += len(unknown)
                examples.setdefault(UNKNOWN_CATEGORY, f"{unknown[0]!r} in {xml_file}")
            names.append(name)
            self.files.append(root / f"VOC{year}" / "JPEGImages" / f"{name}.jpg")
            self._rows.append(row)
        for kind, count in problems.items():
            what = "object(s) of a class not among VOC's 20" if kind == UNKNOWN_CATEGORY else "image(s)"
            warn_once(f"{description}: {count} {what} left out ({kind}), e.g. {examples[kind]}")
        self.problems = dict(problems)
        self.image_ids = _image_ids(names, description)
        for row, image_id in zip(self._rows, self.image_ids):
            row["image_id"] = image_id
        self._names = dict(zip(self.image_ids, names))
        starts = range(0, len(names), unit_size)
        self.unit_sizes = np.asarray([min(unit_size, len(names) - start) for start in starts], dtype=np.int64)

    def image_name(self, image_id: int) -> str:
        """The devkit's name of an image (`000005`), for results files."""
        return self._names[int(image_id)]

    def read_unit(self, unit: int) -> list[Row]:
        rows = []
        for index in range(self.unit_starts[unit], self.unit_starts[unit + 1]):
            file = self.files[index]
            # A file gone since the split was opened becomes empty bytes: skipped as undecodable.
            image = {"bytes": file.read_bytes() if file.is_file() else b"", "path": None}
            rows.append({**self._rows[index], "image": image})
        return rows

    def annotations(self) -> list[Row]:
        return list(self._rows)


def _image_set(root: Path, year: Any, image_set: str) -> list[str]:
    """The image names of `VOC{year}/ImageSets/Main/{image_set}.txt` (first column)."""
    list_file = root / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt"
    if not list_file.is_file():
        raise DataSourceError(
            f"data.path={root} has no VOC{year}/ImageSets/Main/{image_set}.txt: point data.path at the unpacked "
            f"VOCdevkit folder (docs/voc.md) or change data.train_sets / data.val_sets"
        )
    return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def _listing(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


def _parse(xml_file: Path) -> tuple[Row, list[str]]:
    """(the row without `image_id` and image, the names of the objects left out as of an unknown
    class) of one annotation file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not parse, has no numeric image size, or an object has no
            numeric bndbox.
    """
    try:
        tree = ET.parse(xml_file)
    except ET.ParseError as error:
        raise ValueError(f"not xml: {error}") from None
    width, height = _number(tree, "size/width", int), _number(tree, "size/height", int)
    boxes, categories, difficult, unknown = [], [], [], []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        x1, y1, x2, y2 = (_number(obj, f"bndbox/{key}", float) for key in ("xmin", "ymin", "xmax", "ymax"))
        if name not in VOC_CLASSES:
            unknown.append(name)
            continue
        boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])  # 1-based inclusive -> pixel coordinates (Detectron2's)
        categories.append(VOC_CLASSES.index(name))
        difficult.append(0 if obj.find("difficult") is None else _number(obj, "difficult", int))
    objects = {
        "category": categories,
        "bbox": boxes,
        "area": [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes],
        "difficult": difficult,
    }
    return {"width": width, "height": height, "objects": objects}, unknown


def _number(element: ET.Element | ET.ElementTree, path: str, kind: type) -> Any:
    """`kind(element.findtext(path))`; ValueError naming the tag when absent or not a number."""
    text = element.findtext(path)
    try:
        return kind(float(text)) if kind is int else kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"<{path}> is {text!r}, not a number") from None


def _image_ids(names: list[str], description: str) -> list[int]:
    """The names' digits as ids (`2008_000123` -> 2008000123), or 1..N when they do not give
    one distinct number each."""
    if all(_NUMERIC_NAME.fullmatch(name) for name in names):
        ids = [int(name.replace("_", "")) for name in names]
        if len(set(ids)) == len(ids):
            return ids
    log.info(
        "%s: image names are not all distinct numbers (VOC's 000005, 2008_000123): image ids are positions 1..%d",
        description, len(names),
    )  # fmt: skip
    return list(range(1, len(names) + 1))
