# An OpenFL 1.9-style PyTorch task runner, shaped like OpenFL's torch template (OpenFL's API only):
# layers, optimizer and loss set in __init__, the default train_/validate_ hooks; like OpenFL's
# templates it leaves initialize_tensorkeys_for_functions() to the framework.
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from openfl.federated import PyTorchTaskRunner


class DigitsMLP(PyTorchTaskRunner):
    def __init__(self, device="cpu", hidden=32, **kwargs):
        super().__init__(device=device, **kwargs)
        torch.manual_seed(0)
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)
        self.to(device)
        self.optimizer = optim.Adam(self.parameters(), lr=0.01)
        self.loss_fn = F.cross_entropy

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))
