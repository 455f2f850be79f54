"""`decode_rgb` and `pil_to_uint8_rgb`: every PIL mode to uint8 RGB, bad bytes to a `BadRow` kind."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.data.decode import decode_rgb, pil_to_uint8_rgb
from frcnn.data.row_checks import TOO_MANY_PIXELS, UNDECODABLE_IMAGE, BadRow


def _encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def _gray(values: np.ndarray) -> torch.Tensor:
    """The expected RGB tensor of a gray (H, W) uint8 array."""
    return torch.from_numpy(values).expand(3, *values.shape)


def test_16bit_png_maps_linearly_to_0_255():
    values = np.linspace(0, 65535, 48 * 64).round().astype(np.uint16).reshape(48, 64)
    encoded = _encoded(Image.fromarray(values))
    assert Image.open(io.BytesIO(encoded)).mode == "I;16"
    image = decode_rgb(encoded)
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)  # computed by hand
    assert torch.equal(image, _gray(expected))
    assert image[0].min() == 0 and image[0].max() == 255


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_byte_orders(mode):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = Image.frombytes(mode, (4, 1), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert pil_to_uint8_rgb(image)[0].tolist() == [[0, 1, 128, 255]]


def test_32bit_int_and_float():
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I")
    assert pil_to_uint8_rgb(sixteen)[0].tolist() == [[0, 255]]
    wide = Image.fromarray(np.array([[-(2**31), 2**31 - 1]], dtype=np.int32), mode="I")
    assert pil_to_uint8_rgb(wide)[0].tolist() == [[0, 255]]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert pil_to_uint8_rgb(unit)[0].tolist() == [[0, 128, 255]]
    wide_float = Image.fromarray(np.array([[-10.0, 0.0, 10.0, np.nan]], dtype=np.float32), mode="F")
    assert pil_to_uint8_rgb(wide_float)[0].tolist() == [[0, 128, 255, 0]]
    offset = Image.fromarray(np.array([[10.0, 15.0, 20.0, np.inf]], dtype=np.float32), mode="F")
    assert pil_to_uint8_rgb(offset)[0].tolist() == [[0, 128, 255, 0]]


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "YCbCr", "RGB"])
def test_8bit_modes_match_pil_rgb(mode):
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    expected = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    result = pil_to_uint8_rgb(image)
    assert result.dtype == torch.uint8 and result.shape == (3, 6, 5)
    assert torch.equal(result, expected)


def test_palette_with_transparency_drops_alpha():
    image = Image.new("P", (4, 2), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.info["transparency"] = 1
    assert pil_to_uint8_rgb(image)[:, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "encoded",
    [b"", b"not an image at all", None],
    ids=["empty", "garbage", "truncated"],
)
def test_undecodable(encoded):
    if encoded is None:
        encoded = _encoded(Image.new("RGB", (64, 48), (1, 2, 3)), "JPEG")[:200]
    with pytest.raises(BadRow) as caught:
        decode_rgb({"bytes": encoded, "path": None})
    assert caught.value.kind == UNDECODABLE_IMAGE
    assert "BytesIO" not in str(caught.value), "the message says what the bytes are, not where they sit"


def test_too_many_pixels_is_read_from_the_header():
    header_only = _encoded(Image.new("1", (400, 300)))
    with pytest.raises(BadRow, match="400x300 = 120000 pixels > data.max_pixels=100000") as caught:
        decode_rgb(header_only, max_pixels=100_000)
    assert caught.value.kind == TOO_MANY_PIXELS
    assert decode_rgb(header_only, max_pixels=120_000).shape == (3, 300, 400)


def test_pil_bomb_limit_is_a_bad_row_not_a_crash():
    # 16000 x 12000 (192 MP) is over twice PIL's MAX_IMAGE_PIXELS: PIL itself refuses to open it.
    bomb = _encoded(Image.new("1", (16000, 12000)))
    with pytest.raises(BadRow) as caught:
        decode_rgb(bomb, max_pixels=10**12)
    assert caught.value.kind == TOO_MANY_PIXELS
