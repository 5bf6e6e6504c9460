"""Zip archives read and written by fx (workspace archives, certificate packages)."""
