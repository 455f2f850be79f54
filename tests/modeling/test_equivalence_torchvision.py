"""Our detector computes what torchvision's reference Faster R-CNN computes, given its weights.

torchvision (built with FrozenBatchNorm2d and random, non-trivial weights) is the oracle:
its state dict goes through ``frcnn.convert.from_torchvision`` into our model, and both
run on the same images.
"""

import pytest
import torch

from frcnn.convert import to_torchvision
from torchvision_pair import OPTIONS, assert_same_rows_up_to_ties, make_images, make_pair, reference_proposals


@pytest.fixture(scope="module")
def pair():
    return make_pair(**OPTIONS)


@pytest.fixture(scope="module")
def reference_detections(pair):
    with torch.no_grad():
        return pair[0]([image.float() / 255 for image in make_images()[0]])


def test_state_dicts_convert_both_ways():
    reference, ours = make_pair(num_classes=91)  # torchvision's COCO layout loads with strict=True
    assert to_torchvision(ours.state_dict()).keys() == reference.state_dict().keys()
    for key, value in to_torchvision(ours.state_dict()).items():
        assert torch.equal(value, reference.state_dict()[key]), key


@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float"])
def test_eval_detections_equal(pair, reference_detections, as_float):
    _, ours = pair
    images, _ = make_images()
    with torch.no_grad():
        actual = ours([image.float() / 255 for image in images] if as_float else images)
    expected = reference_detections
    for exp, act in zip(expected, actual):
        assert len(exp["boxes"]) == OPTIONS["box_detections_per_img"]
        assert len(exp["labels"].unique()) >= 3, "the comparison should cover several classes"
        assert act["labels"].dtype == torch.int64
        torch.testing.assert_close(act["scores"], exp["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(act["boxes"], exp["boxes"], atol=1e-3, rtol=0)
        assert torch.equal(act["labels"], exp["labels"])


def test_proposals_equal(pair):
    reference, ours = pair
    images, _ = make_images()
    for actual, expected in zip(ours.proposals(images), reference_proposals(reference, images)):
        assert_same_rows_up_to_ties(actual, expected)


def test_training_losses_equal(pair):
    reference, ours = pair
    images, targets = make_images()
    try:
        expected = reference.train()([image.float() / 255 for image in images], targets)
        actual = ours.train()(images, targets)
    finally:
        reference.eval()
        ours.eval()
    names = {"rpn_cls": "loss_objectness", "rpn_box": "loss_rpn_box_reg", "roi_cls": "loss_classifier", "roi_box": "loss_box_reg"}
    assert set(actual) == set(names)
    for ours_name, reference_name in names.items():
        assert actual[ours_name] > 0
        torch.testing.assert_close(actual[ours_name], expected[reference_name], rtol=1e-4, atol=0)
