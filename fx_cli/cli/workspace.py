"""``fx workspace``."""
from fx_cli.cli.lazy import lazy_group

workspace = lazy_group("workspace", "Create, certify, export and import workspaces.", {
    "create": "fx_cli.cli.workspace_cmds:create",
    "certify": "fx_cli.cli.pki_cmds:workspace_certify",
    "export": "fx_cli.cli.archive_cmds:export",
    "import": "fx_cli.cli.archive_cmds:import_",
})
