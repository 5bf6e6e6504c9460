# An OpenFL 1.9-style task runner in plain numpy, written against OpenFL's API only (no fx imports):
# tasks take input_tensor_dict and return (global, local) dicts keyed by TensorKey; 'local_steps'
# is a holdout tensor that never leaves the collaborator.
import numpy as np

from openfl.federated.task.runner import TaskRunner
from openfl.utilities import Metric, TensorKey, change_tags


class LinearRegression(TaskRunner):
    def __init__(self, data_loader, learning_rate=0.05, **kwargs):
        super().__init__(data_loader, **kwargs)
        self.learning_rate = learning_rate
        self.weights = np.zeros(self.feature_shape[0], dtype=np.float32)
        self.bias = np.zeros(1, dtype=np.float32)
        self.local_steps = np.zeros(1, dtype=np.int64)
        self.tensor_dict_split_fn_kwargs = {"holdout_tensor_names": ["local_steps"]}

    def get_tensor_dict(self, with_opt_vars=False):
        return {"linear/w": self.weights.copy(), "linear/b": self.bias.copy(), "local_steps": self.local_steps.copy()}

    def set_tensor_dict(self, tensor_dict, with_opt_vars=False):
        self.weights = np.asarray(tensor_dict["linear/w"], dtype=np.float32).copy()
        self.bias = np.asarray(tensor_dict["linear/b"], dtype=np.float32).copy()
        if "local_steps" in tensor_dict:
            self.local_steps = np.asarray(tensor_dict["local_steps"], dtype=np.int64).copy()

    def get_required_tensorkeys_for_function(self, func_name, **kwargs):
        if func_name == "validate_task" and kwargs["apply"] == "local":
            return [TensorKey(n, "LOCAL", 0, False, ("trained",)) for n in ("linear/w", "linear/b")]
        keys = [TensorKey(n, "GLOBAL", 0, False, ("model",)) for n in ("linear/w", "linear/b")]
        if func_name == "train_task":
            keys.append(TensorKey("local_steps", "LOCAL", 0, False, ("model",)))
        return keys

    def train_task(self, col_name, round_num, input_tensor_dict, epochs=1, **kwargs):
        self.set_tensor_dict(input_tensor_dict)
        for _ in range(epochs):
            for x, y in self.data_loader.get_train_loader():
                error = x @ self.weights + self.bias[0] - y
                self.weights = self.weights - self.learning_rate * (2.0 / len(y)) * (x.T @ error)
                self.bias = self.bias - self.learning_rate * (2.0 / len(y)) * np.sum(error, keepdims=True)
                self.local_steps = self.local_steps + 1
        metric = Metric(name="mse", value=np.array(self._mse(*next(iter(self.data_loader.get_train_loader())))))
        global_dict = {TensorKey(metric.name, col_name, round_num, True, ("metric",)): metric.value}
        for name in ("linear/w", "linear/b"):
            global_dict[TensorKey(name, col_name, round_num, False, ("trained",))] = self.get_tensor_dict()[name]
        local_dict = {TensorKey("local_steps", col_name, round_num + 1, False, ("model",)): self.local_steps.copy()}
        return global_dict, local_dict

    def validate_task(self, col_name, round_num, input_tensor_dict, **kwargs):
        self.set_tensor_dict(input_tensor_dict)
        x, y = next(iter(self.data_loader.get_valid_loader()))
        suffix = "validate_local" if kwargs["apply"] == "local" else "validate_agg"
        tags = change_tags(("metric",), add_field=suffix)
        score = 1.0 / (1.0 + self._mse(x, y))
        return {TensorKey("score", col_name, round_num, True, tags): np.array(score)}, {}

    def _mse(self, x, y):
        return float(np.mean((x @ self.weights + self.bias[0] - y) ** 2))
