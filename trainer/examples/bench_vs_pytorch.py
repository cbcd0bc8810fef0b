"""PyTorch eager side of bench_vs_pytorch.rs, driven over stdin so the two sides can
take turns: one command a line, one answer a line.

  data PATH ROWS TEST_ROWS FEATURES CLASSES SEED
      writes the benchmark's dataset (the npz the tch trainer reads too): features
      N(0, 1), labels the argmax of a fixed random linear map (learnable); answers "ok".
  start THREADS DEVICE BATCH HIDDEN PRECISION SEED
      builds a fresh MLP FEATURES-HIDDEN-HIDDEN-CLASSES (ReLU) with torch.optim.Adam
      (lr 1e-3, PyTorch's defaults: for-loop on CPU, foreach on CUDA); answers "ok".
      PRECISION fp32 (no autocast context), or bf16 (torch.autocast bf16 around the
      forward, loss in fp32).
  epoch
      trains the started model one epoch, as a researcher's plain eager loop does:
      batches taken by index from the resident data, zero_grad() (set to none, the
      default), the loss summed on the device and read once an epoch, as the trainer
      does. Answers the epoch's steps/s and its steps per CPU-second of this thread
      (with THREADS > 1, of the whole process, so the intra-op threads count too).
      The bench asks for one epoch at a time, in turn with the trainer's epochs.
"""
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

data = {}


def make_data(path, rows, test_rows, features, classes, seed):
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((features, classes)).astype(np.float32)
    x = rng.standard_normal((rows + test_rows, features)).astype(np.float32)
    y = (x @ teacher).argmax(axis=1).astype(np.int64)
    np.savez(path, x_train=x[:rows], y_train=y[:rows], x_test=x[rows:], y_test=y[rows:])
    data["x"], data["y"] = torch.from_numpy(x[:rows]), torch.from_numpy(y[:rows])
    data["classes"] = classes


run = {}


def start(threads, device, batch, hidden, precision, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = torch.device(device)
    x, y = data["x"].to(device), data["y"].to(device)
    features = x.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, data["classes"]),
    ).to(device)
    run.clear()
    run.update(device=device, x=x, y=y, batch=batch, model=model,
               opt=torch.optim.Adam(model.parameters(), lr=1e-3), amp=precision == "bf16",
               cpu_clock=time.thread_time if threads == 1 else time.process_time)


def epoch():
    device, x, y, batch = run["device"], run["x"], run["y"], run["batch"]
    model, opt, amp, cpu_clock = run["model"], run["opt"], run["amp"], run["cpu_clock"]
    rows = x.shape[0]
    steps = math.ceil(rows / batch)
    order = torch.randperm(rows, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began, began_cpu = time.perf_counter(), cpu_clock()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for step in range(steps):
        index = order[step * batch:(step + 1) * batch]
        if amp:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(x[index])
            out = out.float()
        else:
            # fp32 as a researcher writes it: no autocast context at all.
            out = model(x[index])
        loss = F.cross_entropy(out, y[index])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * index.numel()
    loss_sum.item()  # waits for the device, like the trainer's epoch-end read
    return steps / (time.perf_counter() - began), steps / (cpu_clock() - began_cpu)


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "data":
        make_data(words[1], *(int(v) for v in words[2:7]))
        print("ok", flush=True)
    elif words[0] == "start":
        threads, device, batch, hidden, precision, seed = words[1:7]
        start(int(threads), device, int(batch), int(hidden), precision, int(seed))
        print("ok", flush=True)
    elif words[0] == "epoch":
        rate, cpu_rate = epoch()
        print(f"{rate:.3f} {cpu_rate:.3f}", flush=True)
    else:
        print(f"unknown command {words[0]!r}", file=sys.stderr, flush=True)
        sys.exit(2)
