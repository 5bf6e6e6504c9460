"""Tamper-evident audit log: a hash chain in ``logs/audit.jsonl`` whose head the aggregator signs."""
from fx_cli.audit.log import AuditLog, NullAudit
from fx_cli.audit.signing import HeadSigner

__all__ = ["AuditLog", "NullAudit", "HeadSigner"]
