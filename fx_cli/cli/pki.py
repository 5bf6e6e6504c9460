"""``fx pki``."""
from fx_cli.cli.lazy import lazy_group

pki = lazy_group("pki", "Check the workspace's certificates.", {
    "check": "fx_cli.cli.pki_cmds:check",
})
