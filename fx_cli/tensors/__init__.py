"""Tensors at rest: the ``.pbuf`` model-file format (OpenFL-compatible)."""
