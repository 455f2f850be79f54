"""The VOC devkit's evaluation (VOCevaldet.m, VOCap.m) transcribed loop for loop: the oracle of
the vectorised `frcnn.evaluation.voc_metric`. Boxes are VOC's 1-based inclusive ones, as the
devkit reads them from the annotation xml and the results files, with its "+ 1" IoU."""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


def devkit_ap(ground_truth: list, detections: list) -> tuple[float, float]:
    """(VOC07 11-point AP, VOC2010+ AP) of one class.

    Args:
        ground_truth: (image id, box [4], difficult) per object of the class.
        detections: (image id, box [4], score) per detection of the class, in the file's order.
    """
    gt = {}
    for image_id, box, difficult in ground_truth:
        gt.setdefault(image_id, []).append([np.asarray(box, dtype=float), bool(difficult), False])
    npos = sum(not difficult for boxes in gt.values() for _, difficult, _ in boxes)
    order = sorted(range(len(detections)), key=lambda d: -detections[d][2])  # stable, as MATLAB's sort
    tp, fp = [], []
    for d in order:
        image_id, bb, _ = detections[d]
        ovmax, jmax = -np.inf, None
        for j, (bbgt, _, _) in enumerate(gt.get(image_id, [])):
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        t = f = 0
        if ovmax >= 0.5:
            entry = gt[image_id][jmax]
            if not entry[1]:
                t, f = (1, 0) if not entry[2] else (0, 1)
                entry[2] = True
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    with np.errstate(invalid="ignore"):
        prec = tp / (tp + fp)  # 0/0 before the first counted detection: NaN, which MATLAB's max skips
    ap07 = 0.0
    for t in np.arange(0, 1.1, 0.1):
        ap07 += (np.nanmax(prec[rec >= t]) if (rec >= t).any() else 0.0) / 11
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.nan_to_num(np.concatenate([[0], prec, [0]]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return ap07, float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def devkit_aps_from_files(annotations: Path, images: list[str], results: Path, prefix: str, classes) -> dict:
    """Per class with a non-difficult object, (VOC07 AP, VOC2010+ AP) of the results files
    `results/{prefix}_{class}.txt` against the xml files `annotations/{image}.xml`, as the devkit reads them."""
    objects = [(image, obj) for image in images for obj in ET.parse(annotations / f"{image}.xml").iter("object")]
    aps = {}
    for name in classes:
        ground_truth = [
            (image, [float(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")], int(obj.findtext("difficult")))
            for image, obj in objects if obj.findtext("name") == name
        ]  # fmt: skip
        lines = (results / f"{prefix}_{name}.txt").read_text().splitlines()
        detections = [(line.split()[0], [float(v) for v in line.split()[2:]], float(line.split()[1])) for line in lines]
        if any(not difficult for _, _, difficult in ground_truth):
            aps[name] = devkit_ap(ground_truth, detections)
    return aps
