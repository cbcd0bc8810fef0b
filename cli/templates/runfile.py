"""runfile.py: one job of the experiment.

expcluster runs this in the job's own directory with:
  EXP_SEED, EXP_STAGE, EXP_METHOD, EXP_CONFIG (the resolved job as JSON; your
  parameters are under "params"), EXP_OUTPUT_DIR (write .npy results here).
Every stdout line `NAME: VALUE` is a metric; repeats form a series.
"""
import json
import os

import numpy as np

config = json.loads(os.environ.get("EXP_CONFIG", "{}"))
params = config.get("params", {})
seed = int(os.environ.get("EXP_SEED", "0"))
out_dir = os.environ.get("EXP_OUTPUT_DIR", "experiment_results")
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(seed)

# A small synthetic task: two interleaved half-moons, not linearly separable.
n = 600
t = rng.uniform(0, np.pi, n)
labels = rng.integers(0, 2, n)
x = np.stack([np.cos(t) + labels, np.sin(t) * (1 - 2 * labels) + 0.5 * labels], 1)
x += rng.normal(0, 0.15, x.shape)
train, test = slice(0, 450), slice(450, n)

hidden = int(params.get("hidden", 32)) if params.get("model", "mlp") == "mlp" else 0
lr = float(params.get("lr", 0.1))
w1 = rng.normal(0, 1, (2, hidden)) if hidden else None
w2 = rng.normal(0, 0.1, (hidden or 2, 1))
b2 = np.zeros(1)


def forward(inputs):
    h = np.tanh(inputs @ w1) if hidden else inputs
    return h, 1 / (1 + np.exp(-(h @ w2 + b2)))


train_losses, test_accuracies = [], []
for epoch in range(int(params.get("epochs", 20))):
    for start in range(0, 450, 32):
        xb, yb = x[train][start:start + 32], labels[train][start:start + 32, None]
        h, p = forward(xb)
        grad = (p - yb) / len(xb)
        if hidden:
            gh = grad @ w2.T * (1 - h ** 2)
            w1 -= lr * xb.T @ gh
        w2 -= lr * h.T @ grad
        b2 -= lr * grad.sum(0)
    _, p = forward(x[train])
    y = labels[train][:, None]
    loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
    _, p_test = forward(x[test])
    accuracy = float(np.mean((p_test[:, 0] > 0.5) == labels[test]))
    train_losses.append(loss)
    test_accuracies.append(accuracy)
    print(f"train_loss: {loss:.6f}")
    print(f"test_accuracy: {accuracy:.6f}")

np.save(os.path.join(out_dir, "train_losses.npy"), np.array(train_losses))
np.save(os.path.join(out_dir, "test_accuracies.npy"), np.array(test_accuracies))
