"""What the model keeps and waits for, against torchvision on the same small batch:
activations stay in the autocast dtype, fewer bytes saved for backward, fewer host syncs."""

import pytest
import torch

from frcnn.modeling.norm import FrozenBatchNorm2d
from frcnn.ops.probes import HostSyncCounter, SavedTensorBytes
from torchvision_pair import make_images, make_pair


@pytest.fixture(scope="module")
def pair():
    return make_pair()  # torchvision's model and ours, same weights, 96-160 px images


@pytest.fixture(scope="module")
def batch():
    images, targets = make_images()
    return [image.float() / 255 for image in images], targets


def test_no_float32_activation_between_backbone_and_heads_under_autocast(pair, batch):
    _, ours = pair
    images, targets = batch
    dtypes: dict[str, set[torch.dtype]] = {}

    def record(name):
        def hook(module, inputs, output):
            outputs = output if isinstance(output, (list, tuple)) else [output]
            dtypes[name] = {t.dtype for t in outputs if isinstance(t, torch.Tensor)}

        return hook

    roots = {"backbone": ours.backbone, "rpn.head": ours.rpn.head, "roi_heads.box_head": ours.roi_heads.box_head}
    watched = [(f"{prefix}.{name}".rstrip("."), module) for prefix, root in roots.items() for name, module in root.named_modules()]
    handles = [module.register_forward_hook(record(name)) for name, module in watched]
    try:
        ours.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = ours(images, targets)
    finally:
        ours.eval()
        for handle in handles:
            handle.remove()
    assert any(isinstance(module, FrozenBatchNorm2d) for name, module in watched if name in dtypes), "trainable layers' BN ran"
    assert len(dtypes) > 100
    float32 = sorted(name for name, kinds in dtypes.items() if kinds - {torch.bfloat16})
    assert not float32, f"modules with non-bfloat16 outputs: {float32[:5]}"
    assert all(loss.dtype == torch.float32 for loss in losses.values()), "losses (coordinates) stay float32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_saved_for_backward_at_most_torchvision(pair, batch, precision):
    images, targets = batch
    saved = []
    for model in pair:
        model.train()
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                with SavedTensorBytes(exclude=[*model.parameters(), *model.buffers()]) as probe:
                    model(images, targets)
        finally:
            model.eval()
        saved.append(probe.total)
    reference, ours = saved
    limit = 1.0 if precision == "fp32" else 0.9
    assert ours <= limit * reference, f"{precision}: ours {ours / 2**20:.1f} MiB, torchvision {reference / 2**20:.1f} MiB"


def test_host_syncs_at_most_half_of_torchvision(pair, batch):
    images, targets = batch
    counts = {}
    for name, model in zip(("torchvision", "ours"), pair):
        model.train()
        try:
            with HostSyncCounter() as train_syncs:
                model(images, targets)
        finally:
            model.eval()
        with torch.no_grad(), HostSyncCounter() as inference_syncs:
            model(images)
        counts[name] = (train_syncs.total, inference_syncs.total)
    assert counts["ours"][0] * 2 <= counts["torchvision"][0], counts
    assert counts["ours"][1] * 2 <= counts["torchvision"][1], counts
