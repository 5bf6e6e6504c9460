"""A click group whose subcommands are imported only when they are used."""
from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """Group mapping command names to ``"module:attribute"`` import paths."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attr = self.lazy_subcommands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module_name}:{attr} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


def lazy_group(name: str, help: str, commands: dict[str, str]) -> LazyGroup:
    """Build a ``LazyGroup`` named ``name`` (no callback)."""
    return LazyGroup(name=name, help=help, lazy_subcommands=commands)
