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
import argparse
import json
import time

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data', required=True)
  parser.add_argument('--rounds', type=int, default=4)
  parser.add_argument('--resample', choices=('once', 'round'), default='round')
  args = parser.parse_args()
  start = time.perf_counter()
  import flwr
  import torch
  from flwr.server.strategy import FedAvg
  from imblearn.over_sampling import SMOTE

  data = dict(np.load(args.data))
  x, y, mask = data['x'], data['y'], data['mask']
  clients, d = x.shape[0], x.shape[-1]
  h, k = int(data['hidden']), int(data['num_classes'])
  threshold, lr = float(data['threshold']), float(data['learning_rate'])
  epochs, batch = int(data['local_epochs']), int(data['batch_size'])

  def model_of(weights):
    model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, k))
    with torch.no_grad():
      for p, w in zip(model.parameters(), weights):
        p.copy_(torch.from_numpy(np.asarray(w, np.float32)))
    return model

  kept = {}  # --resample=once: a client's rows resampled the first time its actor fits it.

  def rows_of(c: int, seed: int):
    if args.resample == 'once' and c in kept:
      return kept[c]
    xc, yc = x[c][mask[c]].astype(np.float32), y[c][mask[c]].astype(np.int64)
    counts = np.bincount(yc, minlength=k)
    neighbours = min(5, counts.min() - 1)
    if neighbours >= 1 and counts.max() / counts.min() > threshold:
      xc, yc = SMOTE(k_neighbors=neighbours, random_state=seed).fit_resample(xc, yc)
    kept[c] = (xc.astype(np.float32), yc.astype(np.int64), int(mask[c].sum()))
    return kept[c]

  class FedARClient(flwr.client.NumPyClient):
    def __init__(self, c: int):
      self.c = c

    def fit(self, parameters, config):
      torch.set_num_threads(1)
      xc, yc, n_real = rows_of(self.c, self.c)
      model = model_of(parameters)
      opt = torch.optim.Adam(model.parameters(), lr=lr)
      xt, yt = torch.from_numpy(xc), torch.from_numpy(yc)
      for _ in range(epochs):
        order = torch.randperm(len(yt))
        for i in range(0, len(yt), batch):
          idx = order[i:i + batch]
          opt.zero_grad()
          torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
          opt.step()
      return [p.detach().numpy() for p in model.parameters()], n_real, {}

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
      test = torch.from_numpy(data['test_x'].astype(np.float32))
      with torch.no_grad():  # The global model scored on the test rows, as fedar_jax does.
        model_of(flwr.common.parameters_to_ndarrays(out[0]))(test).argmax(1)
      marks[server_round].append(time.perf_counter())
      return out

  torch.manual_seed(0)
  init = [p.detach().numpy() for p in model_of([]).parameters()]
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
