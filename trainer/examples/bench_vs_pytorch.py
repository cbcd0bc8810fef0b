"""PyTorch eager side of bench_vs_pytorch.rs: the same MLP, optimizer, batching and
data shape as the tch trainer's run; prints steps/s for each "batch,hidden" argument."""
import os
import sys
import time

import torch
import torch.nn.functional as F

threads, features, classes, rows, steps = (int(v) for v in sys.argv[1:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
device = torch.device("cuda:0" if os.environ.get("BENCH_DEVICE") == "cuda" else "cpu")
x = torch.randn(rows, features, device=device)
y = torch.randint(0, classes, (rows,), device=device)
for config in sys.argv[6:]:
    batch, hidden = (int(v) for v in config.split(","))
    model = torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(rows, device=device)

    def run(n):
        for i in range(n):
            start = (i * batch) % (rows - batch + 1)
            idx = perm[start:start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(10)  # warm-up
    best = 0.0
    for _ in range(3):  # best of three, like the tch side's best epoch
        began = time.perf_counter()
        run(steps)
        best = max(best, steps / (time.perf_counter() - began))
    print(f"{batch},{hidden},{best:.1f}", flush=True)
