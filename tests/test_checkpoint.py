"""frcnn.checkpoint: what each kind of file reads as, and the one-line refusals."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from frcnn.checkpoint import CheckpointError, build_model, instantiate_model, load_checkpoint, read_weights
from frcnn.convert import from_torchvision, to_torchvision
from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.detector import Detector
from frcnn.modeling import FasterRCNN
from frcnn.modeling.config import r50_fpn_config


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    """A 91-class R50-FPN state dict of ours (torchvision's COCO layout), small heads."""
    torch.manual_seed(0)
    return FasterRCNN.r50_fpn(num_classes=91, resize=False, fpn_channels=32, box_representation_size=64).state_dict()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="ckpt=PATH"):
        load_checkpoint(None)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1000)}, "hyper_parameters": {"cfg": {"model": {}}}}, path)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.ckpt")


def test_foreign_checkpoints(tmp_path):
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="not of this app"):
        load_checkpoint(tmp_path / "lightning.ckpt")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not of frcnn"):
        load_checkpoint(tmp_path / "resnet.pth")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pt")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {}, "hyper_parameters": {"cfg": Path("x")}}, tmp_path / "pickled.ckpt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "pickled.ckpt")


def test_torchvision_state_dict_is_converted_while_loading(small_state, tmp_path):
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco.pth"
    torch.save(to_torchvision(small_state), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.kind == "torchvision" and checkpoint.is_bare and checkpoint.num_classes == 91
    assert checkpoint.model_state_dict.keys() == small_state.keys()
    names = checkpoint.row_names()
    assert names[0] == "background" and names[12] == "N/A" and names[90] == "toothbrush" and names[1] == "person"
    # Evaluated on COCO's 80 classes, the rows of their category ids are kept: the --coco-to-80 file.
    model = build_model(checkpoint, r50_fpn_config(81, fpn_channels=32, box_representation_size=64), ["background", *COCO_CLASSES])
    expected = from_torchvision(to_torchvision(small_state), coco_to_80=True)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in expected.items())


def test_detector_reads_a_torchvision_file_with_cocos_names(tmp_path):
    path = tmp_path / "fasterrcnn.pth"
    torch.save(to_torchvision(FasterRCNN.r50_fpn(num_classes=91).state_dict()), path)
    detector = Detector.from_checkpoint(path, device="cpu")
    assert detector.class_names[COCO_CATEGORY_IDS[2]] == "car" and detector.label_to_category_id[18] == 18


def test_bare_file_without_the_datas_classes_is_one_line(small_state, tmp_path):
    path = tmp_path / "frcnn.pt"
    torch.save(small_state, path)
    with pytest.raises(CheckpointError, match=r"has 91 classes and not the data's unicorn: fine-tune it onto them, python train.py model.weights="):
        build_model(load_checkpoint(path), class_names=["background", "person", "unicorn"])


def test_weights_that_do_not_fit_the_config_are_one_line(small_state, tmp_path):
    path = tmp_path / "frcnn.pt"
    torch.save(small_state, path)
    with pytest.raises(CheckpointError, match="do not fit the model config: size mismatch for backbone.fpn.lateral_convs.0.weight") as error:
        build_model(load_checkpoint(path), r50_fpn_config(91))  # FPN 256 wide, the file's 32
    assert "\n" not in str(error.value)


def test_weights_entry_offline_says_where_to_fetch_it(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError) as error:
        read_weights("FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    assert str(error.value) == (
        "could not download FasterRCNN_ResNet50_FPN_Weights.COCO_V1 (URLError): fetch "
        "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth on a machine with internet "
        "and pass its path, model.weights=/path/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    )


def test_weights_entry_is_downloaded_through_torch_hub(small_state, monkeypatch):
    urls = []

    def cached(url, **kwargs):
        urls.append(url)
        return to_torchvision(small_state)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", cached)
    checkpoint = read_weights("FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    assert urls == ["https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"]
    assert checkpoint.kind == "torchvision" and checkpoint.source == "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"


def test_unknown_weights_name_is_one_line():
    with pytest.raises(CheckpointError, match=r"^NoSuch_Weights.X is neither a file nor a torchvision weights entry"):
        read_weights("NoSuch_Weights.X")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_weights(str(Path("missing") / "weights.pth"))


def test_whole_detector_weights_replace_the_backbone_file(caplog):
    """The backbone's ImageNet file is not read (it does not exist here): one line says why."""
    config = {**r50_fpn_config(4, backbone_weights="/gone/resnet50.pth"), "weights": "/weights/coco.pth", "weights_classes": "by_name"}
    with caplog.at_level("INFO", logger="frcnn.checkpoint"):
        model = instantiate_model(config)
    assert isinstance(model, FasterRCNN)
    assert [record.getMessage() for record in caplog.records] == [
        "model.weights=/weights/coco.pth replaces model.backbone.weights=/gone/resnet50.pth: the backbone file is not loaded"
    ]
