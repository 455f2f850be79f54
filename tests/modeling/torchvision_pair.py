"""A torchvision Faster R-CNN (the oracle) and ours with the same random weights, and a small batch:
R50-FPN (``make_pair``) and the MobileNetV3-Large FPN models (``make_mobilenet_pair``).

torchvision's model is built with FrozenBatchNorm2d and random, non-trivial weights; its
state dict goes through ``frcnn.convert.from_torchvision`` into our model.
"""

from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn, fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.convert import from_torchvision
from frcnn.modeling import FasterRCNN

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
NUM_CLASSES = 11
# Small images keep the test fast; 128 and 192 are multiples of 32, the others are not.
SIZES = {"min_size": 96, "max_size": 160}
IMAGE_SHAPES = [(128, 192), (101, 157), (150, 97)]
OPTIONS = {
    # Score threshold 0 and 300 detections per image: random weights then give many
    # detections of several classes.
    "box_score_thresh": 0.0,
    "box_detections_per_img": 300,
    # Sampling budgets larger than the candidate counts make both samplers take every
    # labelled anchor and proposal, so training losses no longer depend on random draws.
    "rpn_batch_size_per_image": 10**6,
    "box_batch_size_per_image": 10**5,
    "box_positive_fraction": 0.5,
}


def randomize_(model: torch.nn.Module, generator: torch.Generator, norm_scale: tuple[float, float] = (0.2, 0.6)) -> None:
    """Random weights and FrozenBN statistics of moderate scale, so outputs are varied but finite.

    ``norm_scale``: the range of the BN scales; below 1 keeps ResNet's 16 residual blocks from
    exploding, MobileNet needs about 1 for its features to depend on the image at all.
    """
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):  # BatchNorm2d's step counter
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.normal_(0.0, 0.1, generator=generator)
            elif tensor.dim() == 1:  # BN scale
                tensor.uniform_(*norm_scale, generator=generator)
            else:
                fan_in = tensor[0].numel()
                tensor.normal_(0.0, (1.0 / fan_in) ** 0.5, generator=generator)


def make_pair(num_classes: int = NUM_CLASSES, **options):
    """A randomised torchvision model and ours with the same weights, both in eval mode."""
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    reference = TorchvisionFasterRCNN(backbone, num_classes=num_classes, **SIZES, **options)
    randomize_(reference, torch.Generator().manual_seed(0))
    ours = FasterRCNN.r50_fpn(num_classes=num_classes, **SIZES, **options)
    ours.load_state_dict(from_torchvision(reference.state_dict()), strict=True)
    return reference.eval(), ours.eval()


def make_images(shapes=IMAGE_SHAPES):
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in shapes]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 90.0, 100.0], [40.5, 30.2, 180.0, 120.0]]), "labels": torch.tensor([1, 7])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # an image without objects
        {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0], [20.0, 60.0, 90.0, 149.0], [0.0, 0.0, 97.0, 150.0]]),
         "labels": torch.tensor([3, 10, 4])},
    ]
    return images, targets


# torchvision's MobileNet builders → our model config; each variant at a small size (the 320
# variant at its own), with the sampling budgets and detection options of OPTIONS, and 256
# training proposals per image (the box head on 2000 takes most of a training step's time).
MOBILENET_BUILDERS = {
    "frcnn_mobilenet_v3_large_fpn": (fasterrcnn_mobilenet_v3_large_fpn, {"min_size": 96, "max_size": 160}),
    "frcnn_mobilenet_v3_large_320_fpn": (fasterrcnn_mobilenet_v3_large_320_fpn, {"min_size": 320, "max_size": 640}),
}
# Images for each variant. The 320 variant keeps 150 proposals per level and image: padding
# gives hundreds of anchors the same objectness, which would tie at that cut, so its images
# all resize to 320x480 exactly (no padding) and their boxes fit the smallest.
MOBILENET_IMAGE_SHAPES = {
    "frcnn_mobilenet_v3_large_fpn": IMAGE_SHAPES,
    "frcnn_mobilenet_v3_large_320_fpn": [(128, 192), (160, 240), (192, 288)],
}
MOBILENET_OVERRIDES = [
    "model.roi_heads.score_thresh=0.0",
    "model.roi_heads.detections_per_img=300",
    "model.rpn.batch_size_per_image=1000000",
    "model.roi_heads.batch_size_per_image=100000",
    "model.roi_heads.positive_fraction=0.5",
    "model.rpn.post_nms_top_n_train=256",
]


def make_mobilenet_pair(model_name: str, norm: str = "frozen_bn", num_classes: int = NUM_CLASSES):
    """torchvision's ``fasterrcnn_mobilenet_v3_large(_320)_fpn(weights=None, weights_backbone=None)``
    (BatchNorm2d, every layer trainable), randomised, and ``model=<model_name>`` built with ``norm``
    from its weights; both in eval mode, where BatchNorm2d computes what FrozenBatchNorm2d does.

    The class logits are scaled up so that detection scores spread over 0.1–0.9 (random
    weights alone give nearly uniform class probabilities).
    """
    builder, sizes = MOBILENET_BUILDERS[model_name]
    torchvision_options = {
        "box_score_thresh": 0.0, "box_detections_per_img": 300, "rpn_batch_size_per_image": 10**6,
        "box_batch_size_per_image": 10**5, "box_positive_fraction": 0.5, "rpn_post_nms_top_n_train": 256,
    }
    reference = builder(weights=None, weights_backbone=None, num_classes=num_classes, **sizes, **torchvision_options)
    randomize_(reference, torch.Generator().manual_seed(0), norm_scale=(0.8, 1.6))
    with torch.no_grad():
        reference.roi_heads.box_predictor.cls_score.weight.mul_(30.0)
    trainable = 6 if norm == "bn" else 3  # torchvision's defaults without and with weights
    ours = build_model(
        model_name,
        [
            *MOBILENET_OVERRIDES, f"model.num_classes={num_classes}", f"model.backbone.norm={norm}",
            f"model.backbone.trainable_layers={trainable}", "model.transform.resize=true",
            f"model.transform.min_size={sizes['min_size']}", f"model.transform.max_size={sizes['max_size']}",
        ],
    )
    state = from_torchvision(reference.state_dict())
    if norm == "frozen_bn":  # the layout of torchvision's trained MobileNet files, whose FrozenBN has no step counter
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    ours.load_state_dict(state, strict=True)
    return reference.eval(), ours.eval()


def build_model(model_name: str, overrides: list[str]) -> FasterRCNN:
    """The model ``conf/train.yaml`` builds with ``model=<model_name>`` and ``overrides``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[f"model={model_name}", *overrides])
    return hydra.utils.instantiate(cfg.model, _convert_="all")


def assert_same_rows_up_to_ties(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-3) -> None:
    """``actual`` and ``expected`` ``[N, D]`` hold the same rows within ``atol``, in any order.

    The folded frozen batch norm is not bit-identical to torchvision's conv + BN, so two rows
    whose scores tie to ~1e-6 (random weights make many) may come out in the other order:
    every row must have a reference row within the tolerance, and every reference row one of ours.
    """
    assert actual.shape == expected.shape
    distance = torch.cdist(actual.double(), expected.double(), p=float("inf"))
    torch.testing.assert_close(actual, expected[distance.argmin(dim=1)], atol=atol, rtol=1e-5)
    torch.testing.assert_close(actual[distance.argmin(dim=0)], expected, atol=atol, rtol=1e-5)


@torch.no_grad()
def reference_proposals(reference: torch.nn.Module, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """torchvision's RPN proposals ``[P, 4]`` per uint8 image, in the input image's pixels
    (what ``FasterRCNN.proposals`` returns)."""
    image_list, _ = reference.transform([image.float() / 255 for image in images])
    proposals, _ = reference.rpn(image_list, reference.backbone(image_list.tensors))
    ratios = [
        torch.tensor([image.shape[2] / resized[1], image.shape[1] / resized[0]] * 2)
        for image, resized in zip(images, image_list.image_sizes)
    ]
    return [boxes * ratio for boxes, ratio in zip(proposals, ratios)]
