"""``fx collaborator``."""
from fx_cli.cli.lazy import lazy_group

collaborator = lazy_group("collaborator", "Register, certify and run collaborators.", {
    "start": "fx_cli.cli.run_cmds:collaborator_start",
    "ping": "fx_cli.cli.run_cmds:collaborator_ping",
    "create": "fx_cli.cli.pki_cmds:collaborator_create",
    "generate-cert-request": "fx_cli.cli.pki_cmds:collaborator_generate_cert_request",
    "certify": "fx_cli.cli.pki_cmds:collaborator_certify",
    "remove": "fx_cli.cli.pki_cmds:collaborator_remove",
})
