"""Grouped NMS against torchvision's ``batched_nms``, in one call and in several."""

import pytest
import torch
from torchvision.ops import batched_nms

from frcnn.ops import batched_nms_per_image
from frcnn.ops.nms import grouped_nms, max_boxes_per_call
from frcnn.ops.probes import HostSyncCounter


def random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(count, 2, generator=generator) * 200
    return torch.cat([xy, xy + 5 + torch.rand(count, 2, generator=generator) * 60], dim=1)


@pytest.mark.parametrize("count", [300, 3 * max_boxes_per_call(torch.device("cpu")) + 17], ids=["one call", "chunked"])
@pytest.mark.parametrize("sorted_groups", [False, True], ids=["any order", "runs of known length"])
def test_grouped_nms_matches_torchvision(count, sorted_groups):
    generator = torch.Generator().manual_seed(count)
    boxes, scores = random_boxes(count, generator), torch.rand(count, generator=generator)
    groups = torch.randint(0, 7, (count,), generator=generator)
    group_sizes = None
    if sorted_groups:
        groups = groups.sort().values
        group_sizes = [size for size in torch.bincount(groups, minlength=7).tolist() if size]
    with HostSyncCounter() as syncs:
        keep = grouped_nms(boxes, scores, groups, 0.5, num_groups=7, group_sizes=group_sizes)
    assert torch.equal(keep, batched_nms(boxes, scores, groups, 0.5))
    calls = -(-count // max_boxes_per_call(boxes.device))  # boxes per call stay under the limit
    reads = 0 if sorted_groups or count <= max_boxes_per_call(boxes.device) else 1
    assert syncs.by_kind["data-dependent"] <= calls + 1 and syncs.by_kind["read"] == reads


def test_grouped_nms_of_nothing():
    assert grouped_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5, 1).shape == (0,)


def test_non_candidates_are_never_returned_and_suppress_nothing():
    generator = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(200, generator), torch.rand(200, generator=generator)
    image_index = torch.randint(0, 2, (200,), generator=generator)
    groups = torch.zeros(200, dtype=torch.int64)
    candidate = torch.rand(200, generator=generator) > 0.3
    kept, valid = batched_nms_per_image(
        boxes, scores.masked_fill(~candidate, float("-inf")), groups, image_index, 0.5, 2, 1, 50, candidate=candidate
    )
    for image in range(2):
        mine = torch.nonzero((image_index == image) & candidate).squeeze(1)
        expected = mine[batched_nms(boxes[mine], scores[mine], groups[mine], 0.5)][:50]
        assert torch.equal(kept[image][valid[image]], expected)
        assert valid[image, : len(expected)].all() and not valid[image, len(expected) :].any(), "valid is a prefix"


def test_batched_nms_per_image_matches_per_image_nms():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=generator) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=generator) * 20], dim=1)
    scores = torch.rand(60, generator=generator)
    groups = torch.randint(0, 3, (60,), generator=generator)
    image_index = torch.arange(60) % 2
    kept, valid = batched_nms_per_image(boxes, scores, groups, image_index, 0.5, num_images=3, num_groups=3, max_per_image=8)
    for image in range(2):
        mine = torch.nonzero(image_index == image).squeeze(1)
        expected = mine[batched_nms(boxes[mine], scores[mine], groups[mine], 0.5)][:8]
        assert torch.equal(kept[image][valid[image]], expected)
    assert not valid[2].any() and (kept[2] == 60).all(), "an image without candidates points at the pad row"
