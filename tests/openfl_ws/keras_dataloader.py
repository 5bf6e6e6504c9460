# An OpenFL 1.9-style Keras data loader (OpenFL's API only): one shard of scikit-learn's digits.
import numpy as np
from sklearn.datasets import load_digits

from openfl.federated import KerasDataLoader


def digits_shard(shard, collaborator_count):
    """Shard ``shard`` (1-based) of a fixed 80/20 split of the digits, images scaled to [0, 1]."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_valid = len(x) // 5
    valid, train = order[:n_valid], order[n_valid:]
    t = np.linspace(0, len(train), collaborator_count + 1).astype(int)
    v = np.linspace(0, len(valid), collaborator_count + 1).astype(int)
    tr, va = train[t[shard - 1]:t[shard]], valid[v[shard - 1]:v[shard]]
    return x[tr], y[tr], x[va], y[va]


class DigitsShard(KerasDataLoader):
    def __init__(self, data_path, batch_size=32, collaborator_count=2, **kwargs):
        super().__init__(batch_size, random_seed=int(data_path), **kwargs)
        self.X_train, self.y_train, self.X_valid, self.y_valid = digits_shard(int(data_path), collaborator_count)
        self.num_classes = 10
