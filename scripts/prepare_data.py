"""Writes scikit-learn's digits (1797 8x8 images, offline) as the .npz the examples use.

Keys: x_train, y_train, x_test, y_test (float64 pixels scaled to [0, 1], int64 labels),
a 75/25 split with random_state=0.
"""
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

out = sys.argv[1]
digits = load_digits()
x = digits.data.astype(np.float64) / 16.0
y = digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
np.savez(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
print(f"wrote {out}: {len(x_train)} train, {len(x_test)} test")
