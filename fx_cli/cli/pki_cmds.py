"""Certificate commands (placeholder until the PKI lands: each exits non-zero)."""
from __future__ import annotations

import click

from fx_cli.errors import NotImplementedYet


def _stub(name: str) -> click.Command:
    @click.command(name=name.split()[-1], context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise NotImplementedYet(f"fx {name}")
    return command


workspace_certify = _stub("workspace certify")
aggregator_generate_cert_request = _stub("aggregator generate-cert-request")
aggregator_certify = _stub("aggregator certify")
collaborator_create = _stub("collaborator create")
collaborator_generate_cert_request = _stub("collaborator generate-cert-request")
collaborator_certify = _stub("collaborator certify")
collaborator_remove = _stub("collaborator remove")
check = _stub("pki check")
