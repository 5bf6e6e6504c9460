# An OpenFL 1.9-style PyTorch data loader (OpenFL's API only): one shard of scikit-learn's digits.
import numpy as np
from sklearn.datasets import load_digits

from openfl.federated import PyTorchDataLoader


class DigitsShard(PyTorchDataLoader):
    def __init__(self, data_path, batch_size=32, collaborator_count=2, **kwargs):
        super().__init__(batch_size, random_seed=int(data_path), **kwargs)
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32).reshape(-1, 64)
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(x))
        valid, train = order[: len(x) // 5], order[len(x) // 5:]
        shard = int(data_path)
        t = np.linspace(0, len(train), collaborator_count + 1).astype(int)
        v = np.linspace(0, len(valid), collaborator_count + 1).astype(int)
        self.X_train, self.y_train = x[train[t[shard - 1]:t[shard]]], y[train[t[shard - 1]:t[shard]]]
        self.X_valid, self.y_valid = x[valid[v[shard - 1]:v[shard]]], y[valid[v[shard - 1]:v[shard]]]
