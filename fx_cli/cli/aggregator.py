"""``fx aggregator``."""
from fx_cli.cli.lazy import lazy_group

aggregator = lazy_group("aggregator", "Run the aggregator, reset its saved run and manage its certificate.", {
    "start": "fx_cli.cli.run_cmds:aggregator_start",
    "reset": "fx_cli.cli.run_cmds:aggregator_reset",
    "status": "fx_cli.cli.status_cmds:aggregator_status",
    "generate-cert-request": "fx_cli.cli.pki_cmds:aggregator_generate_cert_request",
    "certify": "fx_cli.cli.pki_cmds:aggregator_certify",
})
