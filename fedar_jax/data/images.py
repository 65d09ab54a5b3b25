"""Image decoding and resizing shared by the image sources (PIL, no TensorFlow)."""
import numpy as np
from PIL import Image

COLORS = ('grayscale', 'rgb')


def to_array(image: Image.Image, size: int, color: str) -> np.ndarray:
  """A PIL image as float32[size, size, ch] in [0, 1]; ch = 1 (grayscale) or 3 (rgb)."""
  image = image.convert('L' if color == 'grayscale' else 'RGB')
  if image.size != (size, size):
    image = image.resize((size, size), Image.BILINEAR)
  arr = np.asarray(image, np.float32) / 255.0
  return arr[..., None] if arr.ndim == 2 else arr


def from_uint8(pixels: np.ndarray, size: int, color: str) -> np.ndarray:
  """uint8[T, H, W] grayscale images -> float32[T, size, size, ch] in [0, 1]."""
  if pixels.shape[1:] == (size, size) and color == 'grayscale':
    return (pixels.astype(np.float32) / 255.0)[..., None]
  return np.stack([to_array(Image.fromarray(p, 'L'), size, color) for p in pixels])
