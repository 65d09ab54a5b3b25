"""CLI checks of the scale flags (bad values: one line, exit 2)."""
import pytest

from tests.test_main import run_cli


@pytest.mark.parametrize('flags,pattern', [
    (['--client_block=-1'], '--client_block: must be >= 0'),
    (['--num_clients=5', '--clients_per_round=6'], '--clients_per_round: 6 is more than'),
    (['--client_fraction=1.5'], '--client_fraction: must be in [0, 1]'),
    (['--clients_per_round=2', '--client_fraction=0.5'], '--client_fraction: give either'),
    (['--num_processes=2'], '--coordinator_address: is required'),
    (['--num_processes=2', '--process_id=2', '--coordinator_address=h:1'],
     '--process_id: must be in [0, 2)'),
    (['--coordinator_address=localhost'], '--coordinator_address: expected host:port'),
    (['--eval_clients=-1'], '--eval_clients: must be >= 0'),
    (['--num_clients=5', '--eval_clients=6'], '--eval_clients: 6 is more than'),
    (['--virtual_population'], '--virtual_population: needs --clients_per_round'),
    (['--num_clients=2000000000', '--clients_per_round=10', '--attacker_fraction=0.1'],
     '--attacker_fraction: is not supported with a virtual population'),
])
def test_bad_scale_flags_are_one_line_exit_2(tmp_path, flags, pattern):
  proc = run_cli(f'--workdir={tmp_path / "w"}', *flags)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and pattern in lines[0], proc.stderr
  assert not (tmp_path / 'w').exists()
