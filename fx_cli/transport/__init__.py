"""gRPC transport of the federation: wire conversion, chunked tensor streams, server and client plumbing.

Protobuf never leaves this package: ``serde`` converts messages to dataclasses
and numpy arrays, ``chunks`` cuts tensors into checksummed chunks and rebuilds
them, ``server``/``client`` own channel and server lifecycles and retries.
Importing the package is cheap (no gRPC): the plan names ``Network`` here.
"""
from __future__ import annotations


class Network:
    """The plan's ``network.template``: fx has one transport (gRPC); settings live in ``network.settings``."""

    def __init__(self, **settings: object) -> None:
        self.settings = dict(settings)
