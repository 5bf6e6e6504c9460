"""fx's stand-in for the parts of OpenFL 1.9 that TaskRunner workspace code imports.

Loaded under the name ``openfl`` only when OpenFL is not installed (see
``fx_cli/compat/finder.py``).  What is here follows OpenFL 1.9's public
TaskRunner API: ``openfl.federated`` (TaskRunner, DataLoader, KerasTaskRunner,
PyTorchTaskRunner, their data loaders) and ``openfl.utilities`` (TensorKey,
Metric, the holdout split).
"""
FX_COMPAT = True
__version__ = "1.9.0+fx"
