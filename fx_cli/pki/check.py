"""``fx pki check``: every certificate problem in a workspace, in plain words, with what to run."""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from fx_cli.errors import FxError
from fx_cli.names import is_ip
from fx_cli.pki.certs import Role, covers, names_of
from fx_cli.pki.diagnose import fresh_cert_hint
from fx_cli.pki.keys import key_matches
from fx_cli.pki.store import CERTIFY_HINT, Layout, read_cert, read_certs, read_key
from fx_cli.pki.verify import chain_problem, describe, eku_problem, issued_by, validity_problem

Severity = Literal["problem", "note", "ok"]
SERVER_HINT = "on the aggregator host run `fx aggregator generate-cert-request` then `fx aggregator certify`"
CA_FILES_HINT = "restore the CA files from one `fx workspace certify` run"


@dataclass(frozen=True)
class Finding:
    """One line of the report: a file, what was found, and what to run."""

    severity: Severity
    subject: str
    message: str
    hint: str | None = None


class Checker:
    """Collects findings while walking one workspace's ``cert/`` folder."""

    def __init__(self, layout: Layout, agg_addr: str | None, cols: list[str] | None) -> None:
        self.layout, self.agg_addr, self.cols = layout, agg_addr, cols
        self.findings: list[Finding] = []
        self.chain: list[x509.Certificate] = []

    def add(self, severity: Severity, path: Path, message: str, hint: str | None = None) -> None:
        self.findings.append(Finding(severity, self.layout.show(path), message, hint))

    def load(self, path: Path, hint: str) -> x509.Certificate | None:
        try:
            return read_cert(path, hint)
        except FxError as err:
            self.add("problem", path, err.message, err.hint)
            return None

    def key_pair(self, path: Path, cert: x509.Certificate, key_path: Path, hint: str) -> None:
        try:
            matches = key_matches(read_key(key_path, hint), cert)
        except FxError as err:
            self.add("problem", key_path, err.message, err.hint)
            return
        if not matches:
            self.add("problem", path, f"does not match its private key {self.layout.show(key_path)} "
                     "(key/certificate mismatch)", hint)

    def leaf(self, path: Path, role: Role, hint: str) -> x509.Certificate | None:
        """Chain, validity, purpose and key checks shared by server and client certificates."""
        cert = self.load(path, hint)
        if cert is None:
            return None
        before = len(self.findings)
        chain = chain_problem(cert, self.chain, self.layout.show(self.layout.chain)) if self.chain else None
        problems = [f"{chain} (a chain to another CA)" if chain else None,
                    validity_problem(cert), eku_problem(cert, role)]
        for problem in filter(None, problems):
            self.add("problem", path, problem, hint)
        if path.with_suffix(".key").exists():
            self.key_pair(path, cert, path.with_suffix(".key"), hint)
        if len(self.findings) == before:
            self.add("ok", path, describe(cert))
        return cert

    def check_chain(self) -> None:
        path = self.layout.chain
        if not path.exists():
            self.add("problem", path, "not found: this host trusts no CA yet",
                     CERTIFY_HINT + ", or on a collaborator host import the signed package")
            return
        try:
            chain = read_certs(path)
        except FxError as err:
            self.add("problem", path, err.message, err.hint)
            return
        if not any(issued_by(c, c) for c in chain):
            self.add("problem", path, "holds no self-signed root CA", CERTIFY_HINT)
            return
        self.chain = chain
        for cert in chain:
            for text in filter(None, (chain_problem(cert, chain, self.layout.show(path)), validity_problem(cert))):
                self.add("problem", path, f"{names_of(cert).common_name!r} {text}", CERTIFY_HINT)

    def check_ca(self) -> None:
        layout = self.layout
        for crt, key in ((layout.root_crt, layout.root_key), (layout.signing_crt, layout.signing_key)):
            if not crt.exists() and not key.exists():
                continue
            cert = self.load(crt, CERTIFY_HINT)
            if cert is None:
                continue
            if self.chain and cert not in self.chain:
                self.add("problem", crt, f"is not in {layout.show(layout.chain)} (a chain to another CA)",
                         CA_FILES_HINT)
            if key.exists():
                self.key_pair(crt, cert, key, CA_FILES_HINT)
            else:
                self.add("problem", key, "not found: this CA cannot sign", CA_FILES_HINT)

    def check_servers(self) -> None:
        loaded = []
        for path in sorted((self.layout.root / "server").glob("agg_*.crt")):
            cert = self.leaf(path, "server", SERVER_HINT)
            if cert is not None and not path.with_suffix(".key").exists():
                self.add("problem", path.with_suffix(".key"),
                         f"not found: the aggregator cannot use {self.layout.show(path)}", SERVER_HINT)
            if cert is not None:
                loaded.append((path, cert))
        if loaded and self.agg_addr and not any(covers(cert, self.agg_addr) for _, cert in loaded):
            self.uncovered_addr(loaded[0][0], self.agg_addr)
        if not loaded and self.layout.signing_key.exists():
            fqdn = f" --fqdn {self.agg_addr}" if self.agg_addr else ""
            self.add("problem", self.layout.root / "server", "holds no aggregator certificate, so the aggregator "
                     "cannot start with TLS", f"run `fx aggregator generate-cert-request{fqdn}` then "
                     f"`fx aggregator certify{fqdn}`")

    def check_pending(self) -> None:
        """Requests not signed (or not imported) yet."""
        for csr in sorted(self.layout.root.glob("*/*_*.csr")):
            if csr.parent.name in ("server", "client") and not csr.with_suffix(".crt").exists():
                where = "on the aggregator host" if csr.parent.name == "server" else "by the aggregator operator"
                self.add("note", csr, f"request not signed yet; it must be signed {where} (then imported here)")

    def uncovered_addr(self, path: Path, addr: str) -> None:
        flag = "--ip" if is_ip(addr) else "--san"
        self.add("problem", path, f"the server certificate's SAN does not cover network.settings.agg_addr "
                 f"{addr!r}; collaborators dialling it will fail hostname verification",
                 f"run `fx aggregator generate-cert-request {flag} {addr}` and `fx aggregator certify`, "
                 "or set agg_addr to a name the certificate covers")

    def check_clients(self, aggregator_host: bool) -> None:
        for path in sorted((self.layout.root / "client").glob("col_*.crt")):
            hint = fresh_cert_hint(path.stem[len("col_"):])
            cert = self.leaf(path, "client", hint)
            if cert is None:
                continue
            cn = names_of(cert).common_name
            if path.stem != f"col_{cn}":
                self.add("problem", path, f"has CN {cn!r}, not {path.stem[4:]!r} as its file name says", hint)
            self.check_authorized(path, cn, aggregator_host)

    def check_authorized(self, path: Path, cn: str, aggregator_host: bool) -> None:
        if self.cols is None or cn in self.cols:
            return
        message = f"collaborator CN {cn!r} is not in plan/cols.yaml, so the aggregator will refuse it"
        if aggregator_host:
            self.add("problem", path, message, f"run `fx collaborator certify -n {cn}` or add {cn} to plan/cols.yaml")
        else:
            self.add("note", path, message + " (the aggregator's copy of cols.yaml is the one that counts)")

    def check_modes(self) -> None:
        for key in sorted(self.layout.root.rglob("*.key")):
            mode = stat.S_IMODE(key.stat().st_mode)
            if mode & 0o077:
                self.add("problem", key, f"private key has mode {mode:04o}; it must be 0600",
                         f"run `chmod 600 {self.layout.show(key)}`")
        for folder in sorted(p for p in self.layout.root.rglob("private") if p.is_dir()):
            if stat.S_IMODE(folder.stat().st_mode) & 0o077:
                self.add("problem", folder, "private-key folder is open to others; it must be 0700",
                         f"run `chmod 700 {self.layout.show(folder)}`")


def check_workspace(layout: Layout, agg_addr: str | None, cols: list[str] | None) -> list[Finding]:
    """Every finding for the certificates under ``layout``."""
    checker = Checker(layout, agg_addr, cols)
    if not layout.root.is_dir():
        checker.add("problem", layout.root, "no certificate folder", CERTIFY_HINT)
        return checker.findings
    checker.check_chain()
    checker.check_ca()
    checker.check_servers()
    aggregator_host = layout.signing_key.exists() or any((layout.root / "server").glob("agg_*.crt"))
    checker.check_clients(aggregator_host)
    checker.check_pending()
    checker.check_modes()
    return checker.findings


def plan_facts(layout: Layout) -> tuple[str | None, list[str] | None, list[Finding]]:
    """``network.settings.agg_addr`` and cols.yaml names, with findings for files that cannot be read."""
    from fx_cli.plan.loader import load_plan
    from fx_cli.plan.participants import read_cols
    from fx_cli.pki.workspace import cols_path

    findings: list[Finding] = []
    agg_addr = cols = None
    try:
        agg_addr = str(load_plan(layout.workspace / "plan" / "plan.yaml", workspace=layout.workspace,
                                 check_classes=False).network.agg_addr)
    except FxError as err:
        findings.append(Finding("problem", "plan/plan.yaml", err.message, err.hint))
    if cols_path(layout).exists():
        try:
            cols = read_cols(cols_path(layout))
        except FxError as err:
            findings.append(Finding("problem", "plan/cols.yaml", err.message, err.hint))
    return agg_addr, cols, findings


def run_check(layout: Layout) -> list[Finding]:
    """The whole ``fx pki check`` report for one workspace."""
    agg_addr, cols, findings = plan_facts(layout)
    return findings + check_workspace(layout, agg_addr, cols)
