"""frcnn.modeling.faster_rcnn: bad input fails with a ValueError that names the argument; edge cases work."""

import pytest
import torch

from frcnn.modeling import FasterRCNN


@pytest.fixture(scope="module")
def model():
    return FasterRCNN.r50_fpn(num_classes=4, min_size=64, max_size=64)


def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}


IMAGE = torch.zeros(3, 64, 64, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("images", "targets", "message"),
    [
        (IMAGE, [target([[1, 1, 9, 9]], [1])], "images must be a non-empty list"),
        ([torch.zeros(64, 64)], [target([[1, 1, 9, 9]], [1])], r"images\[0\] has shape"),
        ([torch.zeros(3, 64, 64, dtype=torch.int32)], [target([[1, 1, 9, 9]], [1])], r"images\[0\] has dtype"),
        ([IMAGE], None, "targets must be given in training"),
        ([IMAGE], [{"boxes": torch.zeros(2, 5), "labels": torch.ones(2, dtype=torch.int64)}], r"targets\[0\]\['boxes'\]"),
        ([IMAGE], [{"boxes": torch.zeros(1, 4), "labels": torch.ones(1)}], r"targets\[0\]\['labels'\]"),
        ([IMAGE], [target([[1, 1, 9, 9]], [4])], r"labels outside 1..3"),
        ([IMAGE], [target([[1, 1, 9, 9]], [0])], r"labels outside 1..3"),
        ([IMAGE], [target([[1, float("nan"), 9, 9]], [1])], "NaN/inf"),
        ([IMAGE], [target([[5, 5, 5, 9]], [1])], "x2 <= x1"),
    ],
)
def test_bad_training_input_names_the_argument(model, images, targets, message):
    model.train()
    with pytest.raises(ValueError, match=message):
        model(images, targets)


def test_images_without_objects_train_as_background(model):
    model.train()
    losses = model([IMAGE, IMAGE], [target([], []), target([], [])])
    assert set(losses) == {"rpn_cls", "rpn_box", "roi_cls", "roi_box"}
    assert losses["rpn_box"] == 0 and losses["roi_box"] == 0
    assert losses["rpn_cls"] > 0 and losses["roi_cls"] > 0
    assert model.training_stats == {"rpn_positive_anchors": 0.0, "roi_foreground_samples": 0.0}
    sum(losses.values()).backward()


def test_training_leaves_health_statistics_beside_the_losses(model):
    model.train()
    losses = model([IMAGE, IMAGE], [target([[8, 8, 40, 40]], [1]), target([[0, 0, 30, 20], [30, 30, 60, 60]], [2, 3])])
    stats = model.training_stats
    assert set(stats) == {"rpn_positive_anchors", "roi_foreground_samples"} and not set(stats) & set(losses)
    assert not any(value.requires_grad for value in stats.values())
    # Every object's best anchors are positive, and every ground-truth box joins the RoI samples
    # as a foreground: at least (1 + 2) / 2 per image.
    assert stats["rpn_positive_anchors"] >= 1.5 and stats["roi_foreground_samples"] >= 1.5


def test_eval_returns_one_dict_per_image_in_input_pixels():
    model = FasterRCNN.r50_fpn(num_classes=4, min_size=64, max_size=100, box_score_thresh=0.0).eval()
    images = [torch.zeros(3, 40, 90, dtype=torch.uint8), torch.rand(3, 130, 50)]
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for detection, image in zip(detections, images):
        assert set(detection) == {"boxes", "scores", "labels"}
        assert detection["labels"].dtype == torch.int64
        assert len(detection["boxes"]) == len(detection["scores"]) > 0
        assert (detection["boxes"][:, 2] <= image.shape[2] + 1e-3).all()
        assert (detection["boxes"][:, 3] <= image.shape[1] + 1e-3).all()


def test_mixed_precision_keeps_boxes_and_losses_in_float32():
    # bfloat16 autocast on the CPU stands in for 16-mixed on CUDA: same code paths, same casts.
    model = FasterRCNN.r50_fpn(num_classes=4, min_size=64, max_size=96, box_score_thresh=0.0)
    images = [torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8), torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.train()(images, [target([[5, 5, 40, 50]], [2]), target([], [])])
        sum(losses.values()).backward()
        with torch.no_grad():
            detections = model.eval()(images)
            proposals = model.proposals(images)
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses.values())
    assert all(d["boxes"].dtype == torch.float32 and len(d["boxes"]) > 0 for d in detections)
    assert all(p.dtype == torch.float32 and len(p) > 0 for p in proposals)


# ------------------------------------------------------------------ validation loss


def _scenes():
    generator = torch.Generator().manual_seed(3)
    images = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=generator) for _ in range(2)]
    targets = [target([[4.0, 6.0, 40.0, 50.0], [30.0, 10.0, 70.0, 60.0]], [1, 3]), target([[10.0, 12.0, 60.0, 40.0]], [2])]
    return images, targets


def _equal_train_and_test_settings(**options) -> FasterRCNN:
    """A model whose training and evaluation proposals are the same (top-n train = test)."""
    return FasterRCNN.r50_fpn(
        num_classes=4, min_size=64, max_size=80, fpn_channels=32, box_representation_size=64, box_score_thresh=0.0,
        rpn_pre_nms_top_n_train=300, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_train=100, rpn_post_nms_top_n_test=100,
        **options,
    )  # fmt: skip


def test_detect_with_losses_gives_forwards_detections_and_the_training_losses():
    """Oracle: with frozen batch norm and the same proposal settings in both modes, the
    training forward's losses under a seed equal the evaluation pass's from a generator of that seed."""
    torch.manual_seed(0)
    model = _equal_train_and_test_settings()
    images, targets = _scenes()
    torch.manual_seed(7)
    training_losses = model.train()(images, targets)
    detections, losses = model.eval().detect_with_losses(images, targets, torch.Generator().manual_seed(7))
    assert losses.keys() == training_losses.keys()
    for name, value in losses.items():  # evaluation folds every frozen BN into its conv: last-bit differences
        torch.testing.assert_close(value, training_losses[name].detach(), rtol=1e-4, atol=1e-7, msg=name)
    with torch.no_grad():  # as validation runs it (frozen BN folds every layer without autograd)
        expected_detections = model(images)
    for found, expected in zip(detections, expected_detections):
        assert all(torch.equal(found[key], expected[key]) for key in ("boxes", "scores", "labels"))


def test_detect_with_losses_leaves_the_random_stream_and_batch_norm_alone():
    torch.manual_seed(0)
    model = _equal_train_and_test_settings(norm="bn", trainable_layers=5).eval()
    images, targets = _scenes()
    stats_before = {name: tensor.clone() for name, tensor in model.state_dict().items() if "running_" in name or "num_batches" in name}
    rng_before = torch.get_rng_state()
    _, losses = model.detect_with_losses(images, targets, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert stats_before and all(torch.equal(model.state_dict()[name], value) for name, value in stats_before.items())
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())
    with pytest.raises(RuntimeError, match="evaluation mode"):
        model.train().detect_with_losses(images, targets)
