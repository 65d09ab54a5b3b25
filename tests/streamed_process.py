"""One process of a streamed run on 127.0.0.1 (tests/test_cohort_stream.py):
`python -m tests.streamed_process WORKDIR [ADDRESS PROCESS_ID]` runs the tests' small
streamed run from an InMemorySource and prints how many client rows this process read."""
import sys

from fedar_jax import distributed
from fedar_jax import loop
from fedar_jax.data import load
from fedar_jax.data.cohort_source import InMemorySource
from tests.test_cohort_stream import CFG


class CountingSource(InMemorySource):
  rows = 0

  def cohort(self, client_ids):
    self.rows += len(client_ids)
    return super().cohort(client_ids)


def main(workdir, address='', process_id='0'):
  cfg = CFG if not address else CFG.replace(coordinator_address=address, num_processes=2,
                                            process_id=int(process_id))
  distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)
  source = CountingSource(load.load_federated(cfg.replace(seed=cfg.effective_data_seed)))
  loop.train_and_evaluate(cfg, workdir, source=source)
  print(f'read {source.rows} client rows')


if __name__ == '__main__':
  main(*sys.argv[1:])
