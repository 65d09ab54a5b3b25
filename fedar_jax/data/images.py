"""Image decoding and resizing shared by the image sources (PIL, no TensorFlow)."""
import numpy as np
from PIL import Image

COLORS = ('grayscale', 'rgb')
SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N')  # PIL's modes of 16-bit grayscale files.


def to_array(image: Image.Image, size: int, color: str) -> np.ndarray:
  """A PIL image as float32[size, size, ch] in [0, 1]; ch = 1 (grayscale) or 3 (rgb).

  16-bit grayscale is scaled by 1/65535 (PIL's own conversion to 8 bits clips).
  """
  if image.mode in SIXTEEN_BIT:
    return _sixteen_bit(image, size, color)
  image = image.convert('L' if color == 'grayscale' else 'RGB')
  if image.size != (size, size):
    image = image.resize((size, size), Image.BILINEAR)
  arr = np.asarray(image, np.float32) / 255.0
  return arr[..., None] if arr.ndim == 2 else arr


def _sixteen_bit(image: Image.Image, size: int, color: str) -> np.ndarray:
  scaled = Image.fromarray(np.asarray(image, np.float32) / 65535.0, 'F')
  if scaled.size != (size, size):
    scaled = scaled.resize((size, size), Image.BILINEAR)
  arr = np.clip(np.asarray(scaled, np.float32), 0.0, 1.0)[..., None]
  return arr if color == 'grayscale' else np.repeat(arr, 3, axis=-1)


def from_uint8(pixels: np.ndarray, size: int, color: str) -> np.ndarray:
  """uint8[T, H, W] grayscale images -> float32[T, size, size, ch] in [0, 1]."""
  if pixels.shape[1:] == (size, size) and color == 'grayscale':
    return (pixels.astype(np.float32) / 255.0)[..., None]
  return np.stack([to_array(Image.fromarray(p, 'L'), size, color) for p in pixels])
