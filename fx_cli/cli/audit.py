"""``fx audit``."""
from fx_cli.cli.lazy import lazy_group

audit = lazy_group("audit", "Check the aggregator's tamper-evident audit log (logs/audit.jsonl).", {
    "verify": "fx_cli.cli.audit_cmds:audit_verify",
})
