"""The paper workload's rounds in Flower's simulation (Flower + PyTorch + imbalanced-learn).

  FLOWER_PYTHON experiments/flower_round.py --data=ROWS.npz [--rounds=4] [--resample=once]

Run by `python experiments/benchmark.py --sections=torch --compare_python=FLOWER_PYTHON`
(a venv of its own with `flwr[simulation]` 1.42.0, torch 2.13.0, imbalanced-learn and
NumPy: Flower requires protobuf < 7, the project's environment has 7.36), which writes
ROWS.npz (`benchmark_torch.write_rows`): the clients' rows of the paper workload (x [C, N,
D], y [C, N], mask [C, N]), the test rows (test_x) and the settings (threshold,
learning_rate, local_epochs, batch_size, hidden, num_classes). Flower's
legacy simulation (`flwr.simulation.start_simulation`, Ray actors of one CPU each) runs
FedAvg over all C clients for --rounds rounds; each client's `fit` is
torch_round.py's client work (SMOTE where the imbalance ratio is above the threshold,
every round or, with --resample=once, once per client actor and kept; 5 epochs of Adam
on the MLP, one PyTorch thread). Prints one JSON line: the seconds of each round, from
the strategy's `configure_fit` to the end of its `aggregate_fit` (the first round warms
the actors up), and the start-up seconds before the first round.
"""
import json
import time

import torch_round  # The clients' work, shared with the stack without Flower.


def main():
  args = torch_round.arguments(__doc__).parse_args()
  start = time.perf_counter()
  import flwr
  import torch
  from flwr.server.strategy import FedAvg

  data = torch_round.load(args.data)
  x, y, mask, sizes = data['x'], data['y'], data['mask'], data['sizes']
  clients = x.shape[0]
  kept = {}  # --resample=once: a client's rows resampled the first time its actor fits it.

  def rows_of(c: int):
    if args.resample == 'once' and c in kept:
      return kept[c]
    (kept[c],) = torch_round.client_rows(x[c:c + 1], y[c:c + 1], mask[c:c + 1], sizes[2],
                                         data['threshold'], c, True)
    return kept[c]

  class FedARClient(flwr.client.NumPyClient):
    def __init__(self, c: int):
      self.c = c

    def fit(self, parameters, config):
      torch.set_num_threads(1)
      xc, yc, n_real = rows_of(self.c)
      return torch_round.train_client(torch, sizes, parameters, xc, yc, data), n_real, {}

  def client_fn(context):
    return FedARClient(int(context.node_config['partition-id'])).to_client()

  marks = {}

  class TimedFedAvg(FedAvg):
    def configure_fit(self, server_round, parameters, client_manager):
      marks.setdefault('first', time.perf_counter())
      marks[server_round] = [time.perf_counter()]
      return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
      out = super().aggregate_fit(server_round, results, failures)
      test = torch.from_numpy(data['test_x'])
      with torch.no_grad():  # The global model scored on the test rows, as fedar_jax does.
        torch_round.model_of(torch, sizes, flwr.common.parameters_to_ndarrays(out[0]))(
            test).argmax(1)
      marks[server_round].append(time.perf_counter())
      return out

  torch.manual_seed(0)
  init = [p.detach().numpy() for p in torch_round.model_of(torch, sizes, []).parameters()]
  strategy = TimedFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients,
                         min_available_clients=clients,
                         initial_parameters=flwr.common.ndarrays_to_parameters(init))
  flwr.simulation.start_simulation(
      client_fn=client_fn, num_clients=clients,
      config=flwr.server.ServerConfig(num_rounds=args.rounds), strategy=strategy,
      client_resources={'num_cpus': 1, 'num_gpus': 0.0})
  rounds = [round(marks[r][1] - marks[r][0], 4) for r in range(1, args.rounds + 1)]
  print(json.dumps({'flwr': flwr.__version__, 'torch': torch.__version__,
                    'clients': clients, 'resample': args.resample, 'round_s_all': rounds,
                    'startup_s': round(marks['first'] - start, 2)}))


if __name__ == '__main__':
  main()
