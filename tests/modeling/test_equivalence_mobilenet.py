"""``model=frcnn_mobilenet_v3_large_fpn`` and ``model=frcnn_mobilenet_v3_large_320_fpn`` compute what
torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` and ``fasterrcnn_mobilenet_v3_large_320_fpn``
compute, given their weights (converted by ``frcnn.convert.from_torchvision``)."""

import pytest
import torch

from frcnn.convert import main, to_torchvision
from torchvision_pair import (
    MOBILENET_BUILDERS,
    MOBILENET_IMAGE_SHAPES,
    assert_same_rows_up_to_ties,
    build_model,
    make_images,
    make_mobilenet_pair,
    reference_proposals,
)

VARIANTS = list(MOBILENET_BUILDERS)
LOSS_NAMES = {"rpn_cls": "loss_objectness", "rpn_box": "loss_rpn_box_reg", "roi_cls": "loss_classifier", "roi_box": "loss_box_reg"}


@pytest.fixture(scope="module", params=VARIANTS)
def pair_and_images(request):
    return *make_mobilenet_pair(request.param), make_images(MOBILENET_IMAGE_SHAPES[request.param])[0]


def test_trained_file_layout_converts_both_ways_and_with_coco_to_80(tmp_path):
    reference, ours = make_mobilenet_pair(VARIANTS[0], num_classes=91)
    # torchvision's trained files hold FrozenBatchNorm2d, which has no step counter.
    expected = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    converted = to_torchvision(ours.state_dict())
    assert converted.keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in converted.items())

    torch.save(expected, tmp_path / "fasterrcnn_mobilenet_v3_large_fpn.pth")
    main(["--coco-to-80", str(tmp_path / "fasterrcnn_mobilenet_v3_large_fpn.pth"), str(tmp_path / "ours80.pt")])
    ours80 = build_model(VARIANTS[0], ["model.num_classes=81"])
    ours80.load_state_dict(torch.load(tmp_path / "ours80.pt", weights_only=True), strict=True)
    torch.testing.assert_close(ours80.roi_heads.box_predictor.cls_score.bias[1:4], expected["roi_heads.box_predictor.cls_score.bias"][1:4])


def test_eval_detections_equal(pair_and_images):
    reference, ours, images = pair_and_images
    with torch.no_grad():
        expected = reference([image.float() / 255 for image in images])
        actual = ours(images)
    for exp, act in zip(expected, actual):
        assert len(exp["boxes"]) == 300 and len(exp["labels"].unique()) >= 3, "the comparison should cover several classes"
        assert exp["scores"].max() - exp["scores"].min() > 0.5
        torch.testing.assert_close(act["scores"], exp["scores"], atol=1e-4, rtol=0)
        # Boxes whose scores tie may swap places: compare (box, score, label) rows as sets.
        rows = [torch.cat([d["boxes"], d["scores"][:, None] * 10, d["labels"][:, None] * 1e4], dim=1) for d in (act, exp)]
        assert_same_rows_up_to_ties(*rows)


def test_proposals_equal(pair_and_images):
    reference, ours, images = pair_and_images
    for actual, expected in zip(ours.proposals(images), reference_proposals(reference, images)):
        assert len(actual) > 100
        assert_same_rows_up_to_ties(actual, expected)


@pytest.mark.parametrize(("variant", "norm"), [(VARIANTS[0], "bn"), (VARIANTS[1], "frozen_bn")])
def test_training_losses_equal(variant, norm):
    """``norm=bn`` against torchvision's BatchNorm2d in training mode (batch statistics);
    ``norm=frozen_bn`` against the same model with its BatchNorm2d layers in eval mode (running
    statistics: what FrozenBatchNorm2d computes)."""
    reference, ours = make_mobilenet_pair(variant, norm)
    images, targets = make_images(MOBILENET_IMAGE_SHAPES[variant])
    reference.train()
    if norm == "frozen_bn":
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    expected = reference([image.float() / 255 for image in images], targets)
    actual = ours.train()(images, targets)
    assert set(actual) == set(LOSS_NAMES)
    for ours_name, reference_name in LOSS_NAMES.items():
        assert actual[ours_name] > 0
        torch.testing.assert_close(actual[ours_name], expected[reference_name], rtol=1e-4, atol=0)
