"""A torchvision Faster R-CNN (the oracle) and ours with the same random weights, and a small batch.

torchvision's model is built with FrozenBatchNorm2d and random, non-trivial weights; its
state dict goes through ``frcnn.convert.from_torchvision`` into our model.
"""

import torch
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.convert import from_torchvision
from frcnn.modeling import FasterRCNN

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


def randomize_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights and FrozenBN statistics of moderate scale, so outputs are varied but finite."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.normal_(0.0, 0.1, generator=generator)
            elif tensor.dim() == 1:  # FrozenBN scale: below 1 keeps 16 residual blocks from exploding
                tensor.uniform_(0.2, 0.6, generator=generator)
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


def make_images():
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in IMAGE_SHAPES]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 90.0, 100.0], [40.5, 30.2, 180.0, 120.0]]), "labels": torch.tensor([1, 7])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # an image without objects
        {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0], [20.0, 60.0, 90.0, 149.0], [0.0, 0.0, 97.0, 150.0]]),
         "labels": torch.tensor([3, 10, 4])},
    ]
    return images, targets
