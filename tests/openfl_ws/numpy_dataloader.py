# An OpenFL 1.9-style data loader, written against OpenFL's API only (no fx imports).
import numpy as np

from openfl.federated.data.loader import DataLoader

N_FEATURES = 5


def shard_arrays(shard, n_features=N_FEATURES):
    """Shard ``shard``'s linear-regression data: y = X.w + 0.5 + noise (float32)."""
    rng = np.random.default_rng(shard)
    w_true = np.arange(1, n_features + 1, dtype=np.float32)
    n_train, n_valid = 30 + 10 * shard, 20
    x = rng.normal(size=(n_train + n_valid, n_features)).astype(np.float32)
    y = (x @ w_true + 0.5 + 0.1 * rng.normal(size=n_train + n_valid)).astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


class LinearShard(DataLoader):
    def __init__(self, data_path, collaborator_count=2, **kwargs):
        super().__init__(**kwargs)
        self.X_train, self.y_train, self.X_valid, self.y_valid = shard_arrays(int(data_path))

    def get_feature_shape(self):
        return self.X_train[0].shape

    def get_train_loader(self, **kwargs):
        return [(self.X_train, self.y_train)]

    def get_valid_loader(self):
        return [(self.X_valid, self.y_valid)]

    def get_train_data_size(self):
        return len(self.X_train)

    def get_valid_data_size(self):
        return len(self.X_valid)
