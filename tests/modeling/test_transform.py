"""frcnn.modeling.transform: resize, pad, normalise, and boxes mapped back."""

import pytest
import torch

from frcnn.modeling.transform import ImageTransform


def test_transform_resizes_pads_and_maps_back():
    transform = ImageTransform(min_size=50, max_size=80)
    images = [torch.zeros(3, 100, 200, dtype=torch.uint8), torch.zeros(3, 60, 60, dtype=torch.uint8)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 110.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    batch, gt = transform(images, targets)
    # 100×200: min(50/100, 80/200) = 0.4 → 40×80; 60×60 → 50×50. Padded to multiples of 32.
    assert batch.image_sizes.tolist() == [[40, 80], [50, 50]]
    assert batch.tensor.shape == (2, 3, 64, 96)
    assert torch.equal(batch.tensor[1, :, 50:], torch.zeros(3, 14, 96)), "padding is zero after normalisation"
    torch.testing.assert_close(gt.boxes[0, 0], torch.tensor([4.0, 8.0, 44.0, 36.0]))
    assert gt.valid.tolist() == [[True], [False]]
    original = torch.tensor([[100, 200], [60, 60]])
    torch.testing.assert_close(transform.map_back(gt.boxes, batch, original)[0], targets[0]["boxes"])


def test_transform_normalises_uint8_and_float_alike():
    transform = ImageTransform(resize=False)
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    from_uint8, _ = transform([image])
    from_float, _ = transform([image.float() / 255])
    torch.testing.assert_close(from_uint8.tensor, from_float.tensor)
    assert from_uint8.tensor.shape == (1, 3, 32, 32)
    expected = (image[0, 0, 0] / 255 - 0.485) / 0.229
    assert from_uint8.tensor[0, 0, 0, 0].item() == pytest.approx(expected.item(), rel=1e-6)
