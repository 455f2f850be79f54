"""`VOCValidation` gathers every rank's detections and scores each image once."""

import numpy as np

from frcnn.lit.voc_validation import _first_of_each_image


def _detections(*labels: int) -> dict[str, np.ndarray]:
    count = len(labels)
    return {"boxes": np.arange(count * 4, dtype=np.float32).reshape(count, 4), "scores": np.linspace(0.9, 0.5, count), "labels": np.array(labels)}


def test_ranks_gathered_each_image_once():
    # Rank 1 repeats image 11 (a sampler's padding): its copy is not scored again.
    rank0 = (np.array([10, 11]), [_detections(1, 2), _detections()])
    rank1 = (np.array([11, 12]), [_detections(3), _detections(4, 5, 6)])
    image_ids, detections = _first_of_each_image([rank0, rank1])
    assert image_ids.tolist() == [10, 11, 12]
    assert detections.image_ids.tolist() == [10, 10, 12, 12, 12]
    assert detections.labels.tolist() == [1, 2, 4, 5, 6]
    assert detections.boxes.shape == (5, 4) and detections.scores.shape == (5,)


def test_a_rank_without_images():
    image_ids, detections = _first_of_each_image([(np.zeros(0, dtype=np.int64), []), (np.array([3]), [_detections(2)])])
    assert image_ids.tolist() == [3] and detections.labels.tolist() == [2]
