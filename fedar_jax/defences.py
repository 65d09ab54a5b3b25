"""Named defences: one table of name -> the run flags it sets (no JAX).

A named defence is shorthand for a few method flags, so a study can compare
defences that are not a plain product of flag lists (FedAR + median next to
median alone). `--defence=NAME` (fedar_jax.main) and `--defences=A,B`
(fedar_jax.sweep, one group per name) set exactly the flags of the entry; the
numeric parameters of the methods (--trim_fraction, --byzantine_clients,
--focal_gamma, ...) still come from their own flags. A flag given explicitly
with another value than the defence sets is refused (config.check_defence), as
is a sweep list of a field a swept defence sets. docs/defences.md lists the table.
"""
from typing import NamedTuple


class Defence(NamedTuple):
  """flags: {RunConfig field: value} the defence sets. help: one line for the docs."""
  flags: dict
  help: str


_PLAIN = dict(resampler='none', aggregator='mean', loss='ce', dp='none')

# Every entry sets resampler, aggregator, loss and dp (and the FedAR ones the threshold),
# so a defence never inherits another defence's choice from the base flags.
DEFENCES = {
    'none': Defence(dict(_PLAIN), 'plain FedAvg: no resampling, mean, cross-entropy'),
    'fedar_1.5': Defence({**_PLAIN, 'resampler': 'smote', 'threshold': 1.5},
                         'FedAR gate, SMOTE at threshold 1.5'),
    'fedar_3': Defence({**_PLAIN, 'resampler': 'smote', 'threshold': 3.0},
                       'FedAR gate, SMOTE at threshold 3'),
    'median': Defence({**_PLAIN, 'aggregator': 'median'}, 'coordinate-wise median'),
    'trimmed_mean': Defence({**_PLAIN, 'aggregator': 'trimmed_mean'},
                            'trimmed mean (--trim_fraction cut at each end)'),
    'krum': Defence({**_PLAIN, 'aggregator': 'krum'}, 'Krum (f = --byzantine_clients)'),
    'focal': Defence({**_PLAIN, 'loss': 'focal'}, 'focal loss (--focal_gamma)'),
    'balanced_softmax': Defence({**_PLAIN, 'loss': 'balanced_softmax'},
                                'balanced softmax loss'),
    'fedar_median': Defence({**_PLAIN, 'resampler': 'smote', 'threshold': 1.5,
                             'aggregator': 'median'},
                            'FedAR gate (SMOTE, threshold 1.5) + coordinate-wise median'),
    'dp': Defence({**_PLAIN, 'dp': 'fixed'},
                  'DP-FedAvg (--dp_clip_norm, --dp_noise_multiplier; docs/privacy.md)'),
    'fedar_dp': Defence({**_PLAIN, 'resampler': 'smote', 'threshold': 1.5, 'dp': 'fixed'},
                        'FedAR gate (SMOTE, threshold 1.5) under DP-FedAvg'),
}

NAMES = tuple(DEFENCES)


def flags_of(name: str) -> dict:
  """The flags defence `name` sets ({} for '', no named defence)."""
  return dict(DEFENCES[name].flags) if name else {}


def apply(cfg):
  """`cfg` (a RunConfig) with its named defence's flags set (unchanged without one)."""
  return cfg.replace(**flags_of(cfg.defence)) if cfg.defence in DEFENCES else cfg
