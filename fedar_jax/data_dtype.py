"""The dtype client features are stored in on the device (--data_dtype).

`float32` (the default) keeps the rows as they are read. `bfloat16` stores every client's
feature rows x (and, with `--resample_every=once`, the resampled rows kept for later rounds)
in half the bytes; all arithmetic stays float32: the round casts the rows to float32 where it
reads them (`computed`: before the client's resampler, per minibatch in local training, in the
per-client evaluation). The test set stays float32. The module imports JAX only inside
`computed`, so the flag validation can name DTYPES without loading JAX.
"""
import numpy as np

DTYPES = ('float32', 'bfloat16')


def numpy_dtype(name: str) -> np.dtype:
  """The NumPy dtype of DTYPES entry `name` (bfloat16: ml_dtypes')."""
  if name not in DTYPES:
    raise ValueError(f'unknown data dtype {name!r}; allowed: {", ".join(DTYPES)}')
  if name == 'bfloat16':
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(np.float32)


def stored(x, name: str):
  """Host rows x (float32[..., ...]) as the device stores them: cast to DTYPES `name`
  (round to nearest even); float32 returns x unchanged."""
  dtype = numpy_dtype(name)
  if np.asarray(x).dtype == dtype:
    return x
  return np.asarray(x, np.float32).astype(dtype)


def stored_clients(clients, name: str):
  """ClientData with its x `stored` as DTYPES `name` (y, mask, client_id unchanged)."""
  return clients._replace(x=stored(clients.x, name))


def computed(x):
  """Stored rows x as the float32 the round computes with (the same array when float32)."""
  import jax.numpy as jnp
  x = jnp.asarray(x)
  return x if x.dtype == jnp.float32 else x.astype(jnp.float32)
