"""PyTorch eager side of bench_vs_pytorch.rs, driven over stdin so the two sides can
take turns: one command a line, one answer a line.

  data PATH ROWS TEST_ROWS FEATURES CLASSES SEED
      writes the benchmark's dataset (the npz the tch trainer reads too): features
      N(0, 1), labels the argmax of a fixed random linear map (learnable); answers "ok".
  train THREADS DEVICE BATCH HIDDEN EPOCHS PRECISION SEED
      trains a fresh MLP FEATURES-HIDDEN-HIDDEN-CLASSES (ReLU) with torch.optim.Adam
      (lr 1e-3, PyTorch's defaults: for-loop on CPU, foreach on CUDA), batches taken
      by index from the resident data, zero_grad() (set to none, the default), the
      loss summed on the device and read once an epoch, as the trainer does.
      PRECISION fp32, or bf16 (torch.autocast bf16 around the forward, loss in fp32).
      Answers the steps/s of each epoch after the first, space-separated, then ";"
      and the same epochs' steps per CPU-second of this thread (with THREADS > 1,
      of the whole process, so the intra-op threads count too).
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


def train(threads, device, batch, hidden, epochs, precision, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = torch.device(device)
    x, y = data["x"].to(device), data["y"].to(device)
    rows, features = x.shape
    model = torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, data["classes"]),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = precision == "bf16"
    steps = math.ceil(rows / batch)
    cpu_clock = time.thread_time if threads == 1 else time.process_time
    rates, cpu_rates = [], []
    for epoch in range(epochs):
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
        if epoch > 0:
            rates.append(steps / (time.perf_counter() - began))
            cpu_rates.append(steps / (cpu_clock() - began_cpu))
    return rates, cpu_rates


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "data":
        make_data(words[1], *(int(v) for v in words[2:7]))
        print("ok", flush=True)
    elif words[0] == "train":
        threads, device, batch, hidden, epochs, precision, seed = words[1:8]
        rates, cpu_rates = train(int(threads), device, int(batch), int(hidden), int(epochs),
                                 precision, int(seed))
        print(" ".join(f"{rate:.3f}" for rate in rates), ";",
              " ".join(f"{rate:.3f}" for rate in cpu_rates), flush=True)
    else:
        print(f"unknown command {words[0]!r}", file=sys.stderr, flush=True)
        sys.exit(2)
