"""The collaborator role: join, fetch tasks and the global model, run tasks, send results, repeat.

Where things are: ``session`` (RPCs with retries), ``loop`` (the main loop),
``tasks`` (running one task through the task runner), ``heartbeat`` (keeps a
long task alive), ``ping`` (``fx collaborator ping``). Importing is cheap.
"""
from __future__ import annotations


class Collaborator:
    """The plan's ``collaborator.template``; its settings are ``collaborator.settings`` (run: ``fx collaborator start``)."""

    def __init__(self, **settings: object) -> None:
        self.settings = dict(settings)
