"""One job: an MLP (or a linear model when hidden == 0) on scikit-learn's digits.

Reads its parameters from EXP_CONFIG["params"] and its seed from EXP_SEED, prints
`train_loss: …` and `test_accuracy: …` after every epoch, and saves the curves to
EXP_OUTPUT_DIR, as the research protocol asks.
"""
import json
import os
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
out_dir = os.environ["EXP_OUTPUT_DIR"]

digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    digits.data / 16.0, digits.target, test_size=0.25, random_state=0)
classes = np.unique(digits.target)
if params["hidden"]:
    model = MLPClassifier(hidden_layer_sizes=(params["hidden"],), alpha=params["alpha"],
                          random_state=seed, learning_rate_init=1e-3)
else:
    model = SGDClassifier(loss="log_loss", alpha=params["alpha"], random_state=seed)

train_losses, test_accuracies = [], []
rng = np.random.default_rng(seed)
for epoch in range(params["epochs"]):
    order = rng.permutation(len(x_train))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        model.partial_fit(x_train[batch], y_train[batch], classes=classes)
    proba = np.clip(model.predict_proba(x_train), 1e-12, 1)
    loss = float(-np.mean(np.log(proba[np.arange(len(y_train)), y_train])))
    accuracy = float(model.score(x_test, y_test))
    train_losses.append(loss)
    test_accuracies.append(accuracy)
    print(f"train_loss: {loss:.6f}")
    print(f"test_accuracy: {accuracy:.6f}")

np.save(os.path.join(out_dir, "train_losses.npy"), np.array(train_losses))
np.save(os.path.join(out_dir, "test_accuracies.npy"), np.array(test_accuracies))
