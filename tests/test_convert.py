"""``python -m frcnn.convert`` turns a torchvision checkpoint file into ours and back."""

import pytest
import torch

from frcnn.convert import COCO_CATEGORY_IDS, from_torchvision, main, to_torchvision

TORCHVISION_KEYS = {
    "backbone.body.layer1.0.conv1.weight": "backbone.body.layer1.0.conv1.weight",
    "backbone.fpn.inner_blocks.2.0.bias": "backbone.fpn.lateral_convs.2.bias",
    "backbone.fpn.layer_blocks.0.0.weight": "backbone.fpn.output_convs.0.weight",
    "rpn.head.conv.0.0.weight": "rpn.head.conv.weight",
    "rpn.head.cls_logits.bias": "rpn.head.objectness_logits.bias",
    "rpn.head.bbox_pred.weight": "rpn.head.anchor_deltas.weight",
    "roi_heads.box_predictor.cls_score.weight": "roi_heads.box_predictor.cls_score.weight",
}


def test_key_mapping_by_hand():
    state = {key: torch.tensor(float(i)) for i, key in enumerate(TORCHVISION_KEYS)}
    converted = from_torchvision(state)
    assert set(converted) == set(TORCHVISION_KEYS.values())
    assert to_torchvision(converted) == state
    assert "rpn.head.conv.bias" in from_torchvision({"rpn.head.conv.bias": torch.zeros(1)}), "pre-0.13 layout"


def test_command_line_round_trip(tmp_path, capsys):
    state = {key: torch.randn(2) for key in TORCHVISION_KEYS}
    torch.save(state, tmp_path / "tv.pth")
    main([str(tmp_path / "tv.pth"), str(tmp_path / "ours.pt")])
    ours = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert set(ours) == set(TORCHVISION_KEYS.values())
    main(["--to-torchvision", str(tmp_path / "ours.pt"), str(tmp_path / "back.pth")])
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert all(torch.equal(back[key], value) for key, value in state.items())


def test_command_line_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "missing.pth"), str(tmp_path / "out.pt")])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="not a readable PyTorch file"):
        main([str(tmp_path / "junk.pth"), str(tmp_path / "out.pt")])


def test_coco_to_80_keeps_the_real_categories_in_hub_order():
    state = {
        "roi_heads.box_predictor.cls_score.weight": torch.arange(91.0)[:, None].repeat(1, 3),
        "roi_heads.box_predictor.cls_score.bias": torch.arange(91.0),
        "roi_heads.box_predictor.bbox_pred.weight": torch.arange(364.0)[:, None].repeat(1, 3),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(364.0),
    }
    converted = from_torchvision(state, coco_to_80=True)
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[:3] == (1, 2, 3) and COCO_CATEGORY_IDS[-1] == 90
    bias = converted["roi_heads.box_predictor.cls_score.bias"]
    assert bias.shape == (81,) and bias[0] == 0 and bias[1] == 1  # background, person (id 1)
    assert bias[12] == 13  # label 12 = stop sign = COCO id 13 (id 12 does not exist)
    assert converted["roi_heads.box_predictor.bbox_pred.bias"][48:52].tolist() == [52.0, 53.0, 54.0, 55.0]
    assert converted["roi_heads.box_predictor.bbox_pred.weight"].shape == (324, 3)
