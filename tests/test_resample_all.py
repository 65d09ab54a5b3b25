"""Every resampler: jit + vmap over padded clients, padding invariance, degenerate inputs."""
import jax
import numpy as np
import pytest

from fedar_jax import resample

K, D, N = 3, 4, 24


def _client(seed, counts, dup=False):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
  x = (rng.normal(size=(len(y), D)) + 1.5 * y[:, None]).astype(np.float32)
  if dup and len(y):
    x[len(y) // 2:] = x[0]
  perm = rng.permutation(len(y))
  return x[perm], y[perm]


# name -> (counts per class); every client padded to N rows.
CLIENTS = {
    'normal': [14, 6, 4],
    'single_sample_class': [15, 5, 1],
    'fewer_than_k_plus_1': [16, 3, 2],
    'one_class': [10, 0, 0],
    'empty': [0, 0, 0],
    'duplicates': [12, 6, 5],
    'padded': [11, 5, 3],
}


def _batch():
  xs, ys, ms = [], [], []
  for i, (name, counts) in enumerate(CLIENTS.items()):
    x, y = _client(i, counts, dup=name == 'duplicates')
    n = len(y)
    xs.append(np.concatenate([x, np.full((N - n, D), 7.0, np.float32)]))
    ys.append(np.concatenate([y, np.zeros(N - n, np.int32)]))
    ms.append(np.arange(N) < n)
  return np.stack(xs), np.stack(ys), np.stack(ms)


def _make(name, capacity):
  return resample.make_resampler(name, num_classes=K, capacity=capacity, max_class_count=16)


ISSUE_NAMES = ('random_over smote borderline_smote1 borderline_smote2 adasyn kmeans_smote '
               'svm_smote smote_tomek smote_enn random_under nearmiss1 nearmiss2 nearmiss3 '
               'tomek enn renn allknn cnn oss ncr iht cluster_centroids').split()


def test_registry_has_every_sampler_of_the_paper():
  assert set(resample.RESAMPLER_NAMES) == {'none', *ISSUE_NAMES}


def _both(r):
  def both(k, x, y, m):
    *out, fell_back = r.resample(k, x, y, m)
    return tuple(out), fell_back
  return both


@pytest.mark.parametrize('name', [n for n in resample.RESAMPLER_NAMES if n != 'none'])
def test_vmapped_padded_clients_degenerate_inputs_and_padding_invariance(name):
  """One vmapped call over padded clients (one compile), then the 'padded' client
  alone and unpadded (a second compile) must give the same rows."""
  xs, ys, ms = _batch()
  r = _make(name, N)
  keys = jax.random.split(jax.random.key(1), len(CLIENTS))
  (xo, yo, mo), fb = jax.jit(jax.vmap(_both(r)))(keys, xs, ys, ms)
  xo, yo, mo, fb = map(np.asarray, (xo, yo, mo, fb))
  assert xo.shape == (len(CLIENTS), r.capacity, D) and mo.shape == (len(CLIENTS), r.capacity)
  assert np.all(np.isfinite(xo)), 'NaN/inf in the output'
  for c, (cname, counts) in enumerate(CLIENTS.items()):
    out = np.bincount(yo[c][mo[c]], minlength=K)
    if cname in ('one_class', 'empty'):  # nothing to balance: unchanged
      assert out.tolist() == counts, cname
      assert not fb[c], cname
    else:
      assert out.sum() > 0, cname
      assert np.all(out[np.asarray(counts) == 0] == 0), cname  # no absent class appears
    assert not np.any(mo[c][:N] & ~ms[c]), 'a padding row became real'
    if name != 'cluster_centroids':  # kept input rows are unchanged
      kept = mo[c][:N] & ms[c]
      np.testing.assert_array_equal(xo[c][:N][kept], xs[c][kept])
  # Clients that would make imbalanced-learn raise are flagged by SMOTE-like samplers.
  if name in ('smote', 'borderline_smote1', 'adasyn', 'smote_tomek', 'smote_enn'):
    assert fb[list(CLIENTS).index('single_sample_class')]

  # Padding invariance: the 'padded' client (n real rows of N) vs the same rows unpadded.
  c = list(CLIENTS).index('padded')
  n = sum(CLIENTS['padded'])
  single = _make(name, n)
  a = jax.jit(single.resample)(keys[c], xs[c, :n], ys[c, :n], ms[c, :n])[:3]
  xa, ya, ma = map(np.asarray, a)
  xb = np.concatenate([xo[c][:n], xo[c][N:]])
  yb = np.concatenate([yo[c][:n], yo[c][N:]])
  mb = np.concatenate([mo[c][:n], mo[c][N:]])
  np.testing.assert_array_equal(ma, mb)
  np.testing.assert_array_equal(ya[ma], yb[mb])
  np.testing.assert_allclose(xa[ma], xb[mb], rtol=1e-5, atol=1e-5)
