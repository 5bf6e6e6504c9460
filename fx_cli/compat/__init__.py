"""Compatibility layers for workspace code written against other federated-learning tools.

``openfl/`` offers the names OpenFL 1.9's TaskRunner API gives workspace code
(``openfl.federated.TaskRunner``, ``openfl.utilities.TensorKey``, ...).  It is
importable as ``openfl`` only through ``finder.install_openfl_finder``, which
answers last, so a real OpenFL installation always wins.  ``adapter.py`` plugs
such runners into fx's task-runner interface.
"""
