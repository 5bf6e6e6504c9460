"""The model of the torch/digits template: a small CNN for 8x8 grey digits.

Replace it with your own ``torch.nn.Module``; name it in plan.yaml under
task_runner.settings.model.  Tensor names are the ``state_dict`` keys
(``conv.weight``, ``fc1.bias``, ...), so keep attribute names stable.
"""
import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Conv(3x3) -> ReLU -> MaxPool(2) -> Dense -> ReLU -> Dense (logits)."""

    def __init__(self, filters: int = 16, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(filters * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the shared digits loader gives channels-last images (N, 8, 8, 1)
        if x.dim() == 4 and x.shape[-1] == 1:
            x = x.permute(0, 3, 1, 2)
        h = self.pool(torch.relu(self.conv(x)))
        h = torch.relu(self.fc1(h.flatten(1)))
        logits: torch.Tensor = self.fc2(h)
        return logits
