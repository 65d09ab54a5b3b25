"""Bad method flags: a ConfigError naming the flag; on the CLI one line, exit 2, nothing written."""
import subprocess
import sys

import pytest

from fedar_jax import config

BAD = [
    (dict(server_optimizer='fedsgd'), 'server_optimizer', 'unknown value'),
    (dict(aggregator='mode'), 'aggregator', 'unknown value'),
    (dict(loss='hinge'), 'loss', 'unknown value'),
    (dict(client_optimizer='lion'), 'client_optimizer', 'unknown value'),
    (dict(trim_fraction=0.5), 'trim_fraction', 'must be in [0, 0.5)'),
    (dict(trim_fraction=-0.1), 'trim_fraction', 'must be in [0, 0.5)'),
    (dict(trim_fraction=float('nan')), 'trim_fraction', 'must be a finite'),
    (dict(aggregator='krum', byzantine_clients=4, num_clients=10), 'byzantine_clients',
     'too many for 10 clients'),
    (dict(aggregator='multi_krum', byzantine_clients=2, num_clients=10, clients_per_round=6),
     'byzantine_clients', 'too many for 6'),
    (dict(byzantine_clients=-1), 'byzantine_clients', 'must be >= 0'),
    (dict(focal_gamma=-1.0), 'focal_gamma', 'must be >= 0'),
    (dict(prox_mu=-0.1), 'prox_mu', 'must be >= 0'),
    (dict(prox_mu=float('nan')), 'prox_mu', 'must be a finite'),
    (dict(cb_beta=1.0), 'cb_beta', 'must be in [0, 1)'),
    (dict(fedrs_alpha=1.5), 'fedrs_alpha', 'must be in [0, 1]'),
    (dict(server_learning_rate=0.0), 'server_learning_rate', 'must be > 0'),
    (dict(server_tau=float('nan')), 'server_tau', 'must be a finite'),
    (dict(server_momentum=1.0), 'server_momentum', 'must be in [0, 1)'),
    (dict(clip_norm=0.0), 'clip_norm', 'must be > 0'),
]


@pytest.mark.parametrize('changes,flag,pattern', BAD)
def test_bad_method_setting_names_the_flag(changes, flag, pattern):
  with pytest.raises(config.ConfigError) as e:
    config.validate(config.RunConfig(**changes))
  assert e.value.flag == flag and pattern in str(e.value)


def test_good_method_settings_pass():
  config.validate(config.RunConfig(aggregator='krum', byzantine_clients=3, num_clients=10,
                                   server_optimizer='fedyogi', loss='fedlc', prox_mu=0.01,
                                   trim_fraction=0.0, client_optimizer='momentum'))


def test_cli_bad_method_flag_is_one_line_exit_2_nothing_written(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={tmp_path / "w"}',
                         '--aggregator=trimmed_mean', '--trim_fraction=0.6'],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and '--trim_fraction: must be in [0, 0.5)' in lines[0], proc.stderr
  assert not (tmp_path / 'w').exists()
