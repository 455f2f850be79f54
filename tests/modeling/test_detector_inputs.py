"""Bad input to the detector fails with a ValueError that names the argument; edge cases work."""

import pytest
import torch

from frcnn.modeling import FasterRCNN
from frcnn.modeling.backbone import ResNet, load_backbone_weights


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
    sum(losses.values()).backward()


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


def test_trainable_layers_freeze_like_torchvision():
    def trainable(body):
        return {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}

    assert trainable(ResNet(trainable_layers=3)) == {"layer2", "layer3", "layer4"}
    assert trainable(ResNet(trainable_layers=0)) == set()
    assert trainable(ResNet(trainable_layers=5)) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"} - {"bn1"}
    assert trainable(ResNet(norm="bn", trainable_layers=5)) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    with pytest.raises(ValueError, match="norm="):
        ResNet(norm="group")


def test_backbone_weights_load_from_a_torchvision_file(tmp_path):
    from torchvision.models import resnet50

    reference = resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    body = ResNet()
    load_backbone_weights(body, str(path))
    assert torch.equal(body.layer3[2].conv2.weight, reference.layer3[2].conv2.weight)
    assert torch.equal(body.bn1.running_var, reference.bn1.running_var)
    with pytest.raises(ValueError, match="not a torchvision resnet50 state dict"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
        load_backbone_weights(body, str(tmp_path / "other.pth"))


def test_named_backbone_weights_offline_give_one_line(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(RuntimeError, match=r"could not download backbone weights IMAGENET1K_V1 .*model.backbone.weights=/path") as error:
        load_backbone_weights(ResNet(), "IMAGENET1K_V1")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="neither a file nor one of"):
        load_backbone_weights(ResNet(), "no_such_weights")


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ResNet(norm="frozen_bn", trainable_layers=2)
    checkpointed = ResNet(norm="frozen_bn", trainable_layers=2, grad_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(1, 3, 64, 64)
    for body in (plain, checkpointed):
        sum(feature.sum() for feature in body(images)).backward()
    torch.testing.assert_close(checkpointed.layer3[0].conv1.weight.grad, plain.layer3[0].conv1.weight.grad)


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
