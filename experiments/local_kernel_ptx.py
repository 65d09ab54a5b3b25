"""The fused local-training kernel's GPU resources, without a GPU: Triton IR, PTX, ptxas.

  python experiments/local_kernel_ptx.py --triton_python=/path/to/venv/bin/python

Lowers `local_kernel.local_train` on the paper workload's widths (432 features, MLP 10,
2 classes, batch 32, 5 epochs, 416 rows after SMOTE) for CUDA on this machine and writes
its Triton IR to --out (the module XLA's Triton compiles on a GPU). With
--triton_python (a Python with the `triton` package, e.g. a separate virtual
environment with `pip install triton`), that Triton compiles the IR to PTX for sm_90a at
each --num_warps and its bundled ptxas reports registers, spills and the stack; the
shared memory is Triton's. Prints one JSON line per num_warps. The Triton of the pip
package is not the one XLA bundles, so the figures are indicative. Without
--triton_python it writes the IR and says that PTX was skipped; a --triton_python that
cannot import `triton` is named in one line (exit 2) after the IR is written.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp

import workload
from fedar_jax import local_kernel
from fedar_jax import models

# Compiles the IR at argv[1] with argv[2] warps for sm_90a, runs ptxas -v, prints JSON.
_COMPILE = r'''
import glob, json, os, re, subprocess, sys
import triton
from triton.backends.compiler import GPUTarget
k = triton.compile(sys.argv[1], target=GPUTarget('cuda', 90, 32),
                   options={'num_warps': int(sys.argv[2]), 'num_stages': 1})
ptx = sys.argv[1] + '.ptx'
open(ptx, 'w').write(k.asm['ptx'])
bin_dir = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
ptxas = sorted(glob.glob(os.path.join(bin_dir, 'ptxas*')))[-1]
info = subprocess.run([ptxas, '-arch=sm_90a', '-v', ptx, '-o', os.devnull],
                      capture_output=True, text=True).stderr
num = lambda pattern: int(re.search(pattern, info).group(1))
print(json.dumps({'triton': triton.__version__, 'shared_bytes': k.metadata.shared,
                  'registers': num(r'Used (\d+) registers'),
                  'spill_store_bytes': num(r'(\d+) bytes spill stores'),
                  'spill_load_bytes': num(r'(\d+) bytes spill loads'),
                  'stack_bytes': num(r'(\d+) bytes stack frame')}))
'''


def triton_ir(clients: int = 4, rows: int = 416) -> str:
  """The kernel's Triton module (text, no debug locations) on the paper workload's widths."""
  from jax._src.pallas.triton import lowering  # The module XLA receives as bytecode.
  cfg = workload.settings()
  modules = []
  lower = lowering.lower_jaxpr_to_triton_module

  def capture(*args, **kwargs):
    result = lower(*args, **kwargs)
    modules.append(result.module.operation.get_asm(enable_debug_info=False))
    return result

  model = models.MLP(num_classes=cfg['num_classes'], hidden=cfg['hidden'])
  d = cfg['feature_dim']
  params = model.init(jax.random.key(0), jnp.zeros((1, d)))

  def train(key, x, y, mask):
    return local_kernel.local_train(params, key, x, y, mask, learning_rate=1e-3,
                                    epochs=cfg['local_epochs'],
                                    batch_size=cfg['batch_size'], interpret=False)

  args = (jax.random.split(jax.random.key(0), clients), jnp.zeros((clients, rows, d)),
          jnp.zeros((clients, rows), jnp.int32), jnp.ones((clients, rows), bool))
  lowering.lower_jaxpr_to_triton_module = capture
  try:
    jax.jit(jax.vmap(train)).trace(*args).lower(lowering_platforms=('cuda',))
  finally:
    lowering.lower_jaxpr_to_triton_module = lower
  return modules[-1]


def triton_problem(python: str) -> str:
  """Why `python` cannot compile the IR ('' when it imports `triton`)."""
  try:
    proc = subprocess.run([python, '-c', 'import triton'], capture_output=True, text=True,
                          timeout=120)
  except OSError as e:
    return f'cannot run it ({e.strerror})'
  if proc.returncode:
    return 'it has no triton package (pip install triton in that environment)'
  return ''


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', default='/tmp/fedar_local_kernel.ttir')
  parser.add_argument('--triton_python', default='',
                      help='a Python with the triton package (none: write the IR only)')
  parser.add_argument('--num_warps', default='4,8,16')
  args = parser.parse_args()
  text = triton_ir()
  with open(args.out, 'w') as f:
    f.write(text)
  print(json.dumps({'ir': args.out, 'dots': text.count('tt.dot'),
                    'input_precision': sorted(set(re.findall(r'inputPrecision = (\w+)', text)))}))
  if not args.triton_python:
    print('no --triton_python: wrote the Triton IR only, no PTX or ptxas figures',
          file=sys.stderr)
    return
  problem = triton_problem(args.triton_python)
  if problem:
    print(f'--triton_python={args.triton_python}: {problem}; wrote the Triton IR only',
          file=sys.stderr)
    sys.exit(2)
  env = {**os.environ, 'TRITON_DEFAULT_FP_FUSION': '1'}
  for warps in args.num_warps.split(','):
    proc = subprocess.run([args.triton_python, '-c', _COMPILE, args.out, warps],
                          capture_output=True, text=True, env=env, timeout=600)
    line = proc.stdout.strip().splitlines()[-1:] or ['{}']
    record = {'num_warps': int(warps), **json.loads(line[0])}
    if proc.returncode:
      record['error'] = proc.stderr.strip()[-400:]
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
