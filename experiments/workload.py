"""The paper workload, defined once for every script in experiments/.

FedAR's encoded-feature study: 432-dim latent features, 2 classes, 220 rows per
client (200 + 20 at imbalance ratio 10), MLP Dense(10, relu) -> 2 logits, 5
local epochs of batch 32, SMOTE, threshold 1.5 (every client resamples), 500
balanced test rows per class. `QUICK` is the same on small shapes (smoke runs
on a CPU).

Scripts run as `python experiments/NAME.py`, so this module imports as
`workload` (Python puts the script's own directory first on the module search path).
"""
PAPER = dict(dataset='synthetic', samples_per_client=220, num_classes=2, feature_dim=432,
             imbalance_ratio=10.0, hidden=(10,), local_epochs=5, batch_size=32,
             resampler='smote', threshold=1.5, test_per_class=500)
QUICK = dict(PAPER, samples_per_client=60, feature_dim=32, local_epochs=2, test_per_class=100)


def settings(quick: bool = False, **overrides) -> dict:
  """The workload's RunConfig fields (QUICK's with `quick`), `overrides` applied."""
  unknown = set(overrides) - set(_fields())
  if unknown:
    raise KeyError(f'not RunConfig fields: {sorted(unknown)}')
  return {**(QUICK if quick else PAPER), **overrides}


def config(quick: bool = False, **overrides):
  """The workload as a validated `fedar_jax.config.RunConfig`."""
  from fedar_jax import config as config_lib
  return config_lib.validate(config_lib.RunConfig(**settings(quick, **overrides)))


def flags(quick: bool = False, **overrides) -> list[str]:
  """The workload as `fedar-run` flags (`--name=value`; lists comma-separated)."""
  def text(value):
    return ','.join(map(str, value)) if isinstance(value, tuple) else str(value)
  return [f'--{name}={text(value)}' for name, value in settings(quick, **overrides).items()]


def _fields() -> tuple[str, ...]:
  import dataclasses
  from fedar_jax import config as config_lib
  return tuple(f.name for f in dataclasses.fields(config_lib.RunConfig))
