"""The embedded default dataset: seeded synthetic latent "face-emotion" features.

Each class is a mixture of a few Gaussian modes in a low-dimensional latent
space, linearly embedded in D dims (default 432, like the paper's encoded
AffectNet vectors) plus isotropic noise. Modes of different classes sit close
relative to the noise, so a learner trained on imbalanced data shifts its
decision boundary into the minority classes and loses their recall.

Speed: the D-dim noise is nearly all of the random numbers (10,000 clients x
220 rows x 432 dims = 950M draws). It is drawn as 16-bit random integers
looked up in a table of the 65,536 N(0, 1) quantiles at (i + 1/2) / 65,536,
rescaled to unit variance (i.e. a normal truncated at +-4.3 sigma, in steps
of 1/65,536 probability): ~4x less CPU than NumPy's ziggurat normals. Clients
are generated in threads (NumPy releases the GIL), each from its own
generator seeded with (seed, client). The
client array is filled in an anonymous mmap whose pages are faulted in 256
clients at a time (`_host_array`): the page faults of a fresh multi-GB array
cost more than the draws otherwise.
"""
import concurrent.futures
import dataclasses
import functools
import mmap
import os
import sys
from typing import NamedTuple

import numpy as np

from fedar_jax.data.federated import ClientData, TestData


@dataclasses.dataclass(frozen=True)
class SyntheticProblem:
  """Generator parameters: centers float[K, modes, L], embedding float[L, D], noise."""
  centers: np.ndarray
  embedding: np.ndarray
  noise: float

  @property
  def num_classes(self) -> int:
    return self.centers.shape[0]

  def sample(self, labels: np.ndarray, rng: np.random.Generator,
             out: np.ndarray | None = None) -> np.ndarray:
    """Draws one feature vector float32[len(labels), D] per label.

    out: optional C-contiguous float32[len(labels), D] to fill (and return).
    """
    k, modes, latent = self.centers.shape
    n, d = len(labels), self.embedding.shape[1]
    mode = rng.integers(0, modes, size=n)
    z = self.centers[labels, mode] + rng.standard_normal((n, latent), dtype=np.float32)
    if out is None:
      out = np.empty((n, d), np.float32)
    if not out.flags.c_contiguous:
      raise ValueError('out must be C-contiguous')
    bits = rng.bit_generator.random_raw(-(-n * d // 4)).view(np.uint16)[:n * d]
    np.take(_normal_table(float(self.noise)), bits, out=out.reshape(-1))
    out += z.astype(np.float32) @ self.embedding.astype(np.float32)
    return out


@functools.cache
def _normal_table(scale: float) -> np.ndarray:
  """float32[65536]: scale * the N(0, 1) quantiles at (i + 1/2) / 65536, unit variance."""
  from scipy.special import ndtri  # Here: checking the flags (config) loads no SciPy.
  q = ndtri((np.arange(65536) + 0.5) / 65536)
  q /= np.sqrt(np.mean(q * q))
  table = (scale * q).astype(np.float32)
  table.flags.writeable = False
  return table


def make_problem(seed: int, num_classes: int, feature_dim: int, latent_dim: int = 8,
                 modes_per_class: int = 3, separation: float = 1.2,
                 noise: float = 1.0) -> SyntheticProblem:
  """A seeded problem; `separation` is the spread of mode centres in latent units."""
  rng = np.random.default_rng([seed, 0x5EED])
  centers = separation * rng.normal(size=(num_classes, modes_per_class, latent_dim))
  embedding = rng.normal(size=(latent_dim, feature_dim)) / np.sqrt(latent_dim)
  return SyntheticProblem(centers, embedding, noise)


def class_profile(num_classes: int, imbalance_ratio: float) -> np.ndarray:
  """Relative class sizes: geometric from 1 (class 0, majority) to 1/IR (class K-1)."""
  if num_classes == 1:
    return np.ones(1)
  return imbalance_ratio ** (-np.arange(num_classes) / (num_classes - 1))


def min_samples_for_ratio(num_classes: int, imbalance_ratio: float) -> int:
  """Smallest client size that holds one minority sample at this ratio."""
  profile = class_profile(num_classes, imbalance_ratio)
  return int(np.ceil(profile.sum() / profile[-1] - 1e-9))


def imbalanced_counts(n: int, num_classes: int, imbalance_ratio: float) -> np.ndarray:
  """Per-class counts int[K] summing to n, majority/minority ~= imbalance_ratio.

  Raises ValueError if n cannot hold one sample of every class at this ratio.
  """
  need = min_samples_for_ratio(num_classes, imbalance_ratio)
  if n < need:
    raise ValueError(f'{n} samples cannot hold every class at ratio {imbalance_ratio:g} '
                     f'(need at least {need})')
  share = class_profile(num_classes, imbalance_ratio)
  share = n * share / share.sum()
  counts = np.floor(share).astype(int)
  order = np.argsort(-(share - counts), kind='stable')
  counts[order[:n - counts.sum()]] += 1
  if counts.min() < 1:
    raise ValueError(f'{n} samples cannot hold every class at ratio {imbalance_ratio:g}')
  return counts


class Skew(NamedTuple):
  """How synthetic clients differ (the default: not at all, every client at
  `imbalance_ratio`). ratio_max: if above the ratio, client c's ratio is log-uniform in
  [ratio, ratio_max] (--imbalance_ratio_max); partition 'dirichlet': client c's class
  shares are Dirichlet(alpha) (--partition=dirichlet, --dirichlet_alpha), its counts a
  multinomial draw of N rows. Both are drawn from client c's own stream of (seed, c)."""
  ratio_max: float = 0.0
  partition: str = 'imbalance'
  alpha: float = 0.5

  @property
  def varies(self) -> bool:
    return self.partition == 'dirichlet' or self.ratio_max > 0


def skew_of(cfg) -> Skew:
  """The Skew of a RunConfig's synthetic data."""
  return Skew(float(cfg.imbalance_ratio_max), cfg.partition, float(cfg.dirichlet_alpha))


def client_counts(seed: int, client: int, samples_per_client: int, num_classes: int,
                  imbalance_ratio: float, skew: Skew = Skew()) -> np.ndarray:
  """int[K]: client `client`'s class counts (summing to samples_per_client)."""
  if not skew.varies:
    return imbalanced_counts(samples_per_client, num_classes, imbalance_ratio)
  rng = np.random.Generator(np.random.SFC64([seed, 3, client]))
  if skew.partition == 'dirichlet':
    share = np.nan_to_num(rng.dirichlet(np.full(num_classes, skew.alpha)))
    if share.sum() <= 0:  # Every share underflowed (tiny alpha): one class holds the rows.
      share[rng.integers(num_classes)] = 1.0
    return rng.multinomial(samples_per_client, share / share.sum())
  ratio = imbalance_ratio
  if skew.ratio_max > imbalance_ratio:
    ratio = float(np.exp(rng.uniform(np.log(imbalance_ratio), np.log(skew.ratio_max))))
  return imbalanced_counts(samples_per_client, num_classes, ratio)


def max_class_count(samples_per_client: int, num_classes: int, imbalance_ratio: float,
                    skew: Skew = Skew()) -> int:
  """The largest class count any client can hold (the resamplers' static bound): the
  majority at the largest ratio; every row under a Dirichlet partition."""
  if skew.partition == 'dirichlet':
    return samples_per_client
  ratio = max(imbalance_ratio, skew.ratio_max)
  return int(imbalanced_counts(samples_per_client, num_classes, ratio).max())


def synthetic_federated(seed: int, num_clients: int, samples_per_client: int,
                        num_classes: int, feature_dim: int, imbalance_ratio: float,
                        test_per_class: int, client_ids=None, skew: Skew = Skew()):
  """Clients with `samples_per_client` rows at `imbalance_ratio`, and a balanced test set.

  Class 0 is every client's majority and class K-1 its minority (the globally
  imbalanced setting FedAR studies); `skew` makes clients differ (heterogeneous
  ratios, or Dirichlet label skew). Client c's data depends only on (seed, c),
  so a host can generate just its own clients: `client_ids` (default
  range(num_clients)) picks which, in order; ClientData.client_id holds them.

  Returns:
    (ClientData with x[len(client_ids), N, D], TestData with x[K * test_per_class, D]).
  """
  problem = make_problem(seed, num_classes, feature_dim)
  ids = np.asarray(range(num_clients) if client_ids is None else client_ids, np.int32)
  clients = synthetic_clients(problem, seed, ids, samples_per_client, imbalance_ratio, skew)
  return clients, synthetic_test(problem, seed, test_per_class)


def synthetic_clients(problem: SyntheticProblem, seed: int, ids: np.ndarray,
                      samples_per_client: int, imbalance_ratio: float,
                      skew: Skew = Skew()) -> ClientData:
  """The clients `ids` (int32[P], any order, repeats allowed) of `synthetic_federated`:
  x float32[P, N, D], y int32[P, N], mask all True, client_id = ids. Client c's rows
  depend only on (seed, c); clients are generated in threads."""
  num_classes = problem.num_classes
  feature_dim = problem.embedding.shape[1]
  labels = None  # Every client's, unless they differ.
  if not skew.varies:
    counts = imbalanced_counts(samples_per_client, num_classes, imbalance_ratio)
    labels = np.repeat(np.arange(num_classes), counts).astype(np.int32)
  ids = np.asarray(ids, np.int32)
  # Every client holds exactly samples_per_client rows: fill one preallocated array
  # (no per-client copies; 10,000 x 220 x 432 float32 is 3.8 GB).
  x, populate = _host_array((len(ids), samples_per_client, feature_dim), np.float32)
  y = np.empty((len(ids), samples_per_client), np.int32)

  def fill(rows):
    for i in rows:
      if (i - rows[0]) % 256 == 0:  # Fault the next 256 clients' pages in at once.
        populate(i, min(i + 256, rows[-1] + 1))
      rng = client_rng(seed, int(ids[i]))
      own = labels
      if own is None:
        own = np.repeat(np.arange(num_classes), client_counts(
            seed, int(ids[i]), samples_per_client, num_classes, imbalance_ratio,
            skew)).astype(np.int32)
      y[i] = rng.permutation(own)
      problem.sample(y[i], rng, out=x[i])

  workers = max(1, min(os.cpu_count() or 1, 8, len(ids)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(fill, np.array_split(np.arange(len(ids)), workers)))
  return ClientData(x, y, np.ones(y.shape, bool), ids)


def synthetic_test(problem: SyntheticProblem, seed: int, test_per_class: int) -> TestData:
  """The balanced test set of `synthetic_federated`: x float32[K * test_per_class, D]."""
  rng = np.random.Generator(np.random.SFC64([seed, 2]))
  y_test = np.repeat(np.arange(problem.num_classes), test_per_class).astype(np.int32)
  return TestData(problem.sample(y_test, rng), y_test, np.ones(len(y_test), bool))


_MADV_POPULATE_WRITE = 23  # Linux >= 5.14; not in Python's mmap module before 3.13.
_MMAP_BYTES = 64 << 20  # Arrays this large or larger live in an anonymous mmap.


def _host_array(shape, dtype):
  """(np.empty(shape, dtype), populate(first, stop)) for an array to fill in row ranges.

  Large arrays (>= 64 MiB) live in a private anonymous mmap and `populate` faults
  rows [first, stop) of the leading axis in with one madvise(MADV_POPULATE_WRITE)
  call. Why (BUILD_NOTES, *Synthetic data start-up*): NumPy asks for transparent
  huge pages for large arrays, whose faults cost ~3x the system time of 4 KiB
  pages on this VM, and faulting 4 KiB pages one write at a time costs another
  ~3x that of populating them in one call. The memory is freed with the array
  (the mapping is its base). Elsewhere (small arrays, no MAP_ANONYMOUS, older
  kernels) `populate` does nothing and the first writes fault the pages in.
  """
  nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
  if nbytes < _MMAP_BYTES or not hasattr(mmap, 'MAP_ANONYMOUS'):
    return np.empty(shape, dtype), lambda first, stop: None
  buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
  row = nbytes // shape[0] if shape[0] else 0
  supported = [sys.platform.startswith('linux')]

  def populate(first, stop):
    if not supported[0] or stop <= first:
      return
    begin = first * row // mmap.PAGESIZE * mmap.PAGESIZE
    end = min(nbytes, stop * row)
    try:
      buf.madvise(_MADV_POPULATE_WRITE, begin, end - begin)
    except OSError:  # EINVAL before Linux 5.14: the writes fault the pages in.
      supported[0] = False
  return np.frombuffer(buf, dtype).reshape(shape), populate


def client_rng(seed: int, client: int) -> np.random.Generator:
  """Client `client`'s generator: depends on (seed, client) only."""
  return np.random.Generator(np.random.SFC64([seed, 1, client]))
