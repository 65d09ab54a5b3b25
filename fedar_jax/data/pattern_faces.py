"""Generated face-like images whose class is visible in the pixels (for tests and experiments).

A face is a bright oval with two eyes and a mouth; class k sets the mouth
curvature (frown .. smile) and the brow slant. Every image gets a random
shift, contrast and Gaussian pixel noise, so classes overlap more as `noise`
grows. `write_fer2013_csv` writes them in the FER2013 CSV format.
"""
import numpy as np

from fedar_jax.data import fer2013


def pattern_faces(rng: np.random.Generator, labels: np.ndarray, num_classes: int,
                  size: int = 48, noise: float = 0.35) -> np.ndarray:
  """uint8[T, size, size] grayscale faces for int labels[T] in [0, num_classes)."""
  t = len(labels)
  grid = (np.arange(size) + 0.5) / size * 2 - 1  # [-1, 1]
  yy, xx = np.meshgrid(grid, grid, indexing='ij')
  shift = rng.uniform(-0.08, 0.08, (t, 2, 1, 1))
  yy, xx = yy[None] - shift[:, 0], xx[None] - shift[:, 1]
  frac = np.asarray(labels, float) / max(num_classes - 1, 1)
  curve = (1 - 2 * frac)[:, None, None]  # mouth bend: +1 frown .. -1 smile
  slant = (2 * frac - 1)[:, None, None]
  face = ((xx / 0.75) ** 2 + (yy / 0.9) ** 2 < 1).astype(float) * 0.6
  eyes = sum(np.exp(-((xx - ex) ** 2 + (yy + 0.25) ** 2) / 0.006) for ex in (-0.3, 0.3))
  brows = sum(np.exp(-((yy + 0.45 + slant * 0.15 * np.sign(ex) * (xx - ex) / 0.2) ** 2) / 0.003)
              * (np.abs(xx - ex) < 0.2) for ex in (-0.3, 0.3))
  mouth_y = 0.4 - curve * 0.25 * (1 - (xx / 0.35) ** 2)
  mouth = np.exp(-((yy - mouth_y) ** 2) / 0.004) * (np.abs(xx) < 0.35)
  img = face - 0.5 * eyes - 0.5 * brows - 0.5 * mouth
  img = img * rng.uniform(0.7, 1.3, (t, 1, 1)) + rng.uniform(0.1, 0.3, (t, 1, 1))
  img = img + noise * rng.normal(size=img.shape)
  return np.clip(img * 255, 0, 255).astype(np.uint8)


def write_fer2013_csv(path: str, seed: int, per_class, emotions=(3, 4), noise: float = 0.35,
                      usage: str = 'Training') -> None:
  """Writes a FER2013-format CSV with per_class[j] generated 48x48 faces of emotion code emotions[j].

  Generated class j uses the pattern of index j among len(emotions) classes.
  """
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(len(emotions)), per_class)
  labels = labels[rng.permutation(len(labels))]
  pixels = pattern_faces(rng, labels, len(emotions), fer2013.SIDE, noise)
  with open(path, 'w') as f:
    f.write('emotion,pixels,Usage\n')
    for j, p in zip(labels, pixels):
      f.write(f'{emotions[j]},{" ".join(map(str, p.reshape(-1)))},{usage}\n')
