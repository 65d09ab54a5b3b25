"""Flags that apply to some settings only: one given where it does nothing is refused.

`APPLIES` maps a flag to (applies, reason): `applies(values)` says whether the
flag has an effect, where `values(field)` is the set of values a RunConfig field
takes in this command (one value in a run; in a sweep the base value and the
values of the sweep list of that field). A new flag that only some settings use
declares it with one entry here. Light to import (no JAX).
"""
from typing import Callable, Iterable, NamedTuple

from fedar_jax.config import ConfigError

Values = Callable[[str], set]


class Use(NamedTuple):
  """When a flag has an effect, and the reason shown when it does not."""
  applies: Callable[[Values], bool]
  reason: str


def _image_source(values: Values) -> bool:
  return any(d in ('fer2013', 'image_folder') or d.startswith('tfds:')
             for d in values('dataset'))


def _attackers(kinds: tuple[str, ...]) -> Callable[[Values], bool]:
  def applies(values: Values) -> bool:
    return (any(f > 0 for f in values('attacker_fraction'))
            and bool(values('attack') & set(kinds)))
  return applies


def _dp(*mechanisms: str) -> Callable[[Values], bool]:
  return lambda values: bool(values('dp') & set(mechanisms))


_DP_REASON = 'applies with --dp=fixed or adaptive only (docs/privacy.md)'
_ADAPTIVE_REASON = 'applies with --dp=adaptive only (docs/privacy.md)'

APPLIES = {
    'color': Use(_image_source, 'applies to image sources only (fer2013, image_folder, '
                                'tfds:NAME)'),
    'image_size': Use(_image_source, 'applies to image sources only (fer2013, image_folder, '
                                     'tfds:NAME)'),
    'data_path': Use(lambda v: bool(v('dataset') & {'latent_csv', 'fer2013'}),
                     'applies to --dataset=latent_csv or fer2013 only'),
    'attack_target': Use(_attackers(('skew', 'scale')),
                         'applies to skew or scale attackers only (--attacker_fraction > 0 '
                         'and --attack=skew or scale)'),
    'attack_ratio': Use(_attackers(('skew',)),
                        'applies to skew attackers only (--attacker_fraction > 0 and '
                        '--attack=skew)'),
    'coordinator_timeout_s': Use(lambda v: bool(v('coordinator_address') - {''}),
                                 'applies to multi-host runs only (--coordinator_address)'),
    **{flag: Use(_dp('fixed', 'adaptive'), _DP_REASON)
       for flag in ('dp_clip_norm', 'dp_noise_multiplier', 'dp_accountant', 'dp_delta')},
    **{flag: Use(_dp('adaptive'), _ADAPTIVE_REASON)
       for flag in ('dp_target_quantile', 'dp_clip_learning_rate', 'dp_clip_count_stddev')},
}


def refuse_idle(given: Iterable[str], values: Values, current: Callable[[str], object]) -> None:
  """Raises ConfigError for the first flag in `given` (flags given explicitly) that
  `APPLIES` says does nothing under `values`; `current(flag)` is its value, for the message."""
  for flag in given:
    use = APPLIES.get(flag)
    if use is not None and not use.applies(values):
      raise ConfigError(flag, f'{current(flag)} does nothing here: the flag {use.reason}')
