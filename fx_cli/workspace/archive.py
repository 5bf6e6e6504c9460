"""What a workspace archive may hold: the rules shared by export and import.

An archive carries what every site needs to join one federation (the plan,
the code, the initial model, the requirements) and nothing that belongs to a
single site: keys, certificates, data, logs, local state or trained models.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from fx_cli.archive.safezip import name_key

# Suffixes of PKI material.  A certificate chain smuggled into an archive would make
# the importing site trust a foreign CA, so these are refused anywhere in the tree.
SECRET_SUFFIXES = (".key", ".crt", ".csr", ".pem", ".srl", ".p12", ".pfx", ".der")
SITE_DIRS = {
    "cert": "certificates and private keys stay at each site",
    "data": "data never leaves its site",
    "logs": "logs are site-local",
    "local_state": "local state (tensor database) is site-local",
}
ARCHIVE_DIRS = ("plan", "src", "save")
ARCHIVE_FILES = ("requirements.txt", ".workspace")
FROZEN_PLAN = re.compile(r"^plan/plan_([0-9a-f]{8})\.yaml$")
PLAN_FILE = "plan/plan.yaml"
MARKER_FILE = ".workspace"
DEFAULT_MARKER = "current_plan_name: default\n"
LAYOUT = "plan/, src/, save/<model>.pbuf, requirements.txt and .workspace"
# PEM (PKCS#1/#8, EC, OpenSSH, encrypted) and PGP private keys, whatever the file is called.
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")
SCAN_CHUNK = 1024 * 1024


def never_shipped(name: str) -> str | None:
    """Why ``name`` (a posix path relative to the workspace) must never be in an archive."""
    path = PurePosixPath(name)
    if "__pycache__" in path.parts or path.suffix == ".pyc":
        return "Python bytecode cache"
    if path.parts and path.parts[0] in SITE_DIRS:
        return SITE_DIRS[path.parts[0]]
    if path.suffix.lower() in SECRET_SUFFIXES:
        return "certificate, key or certificate request"
    return None


def holds_private_key(path: Path) -> bool:
    """True when the file contains a private key block (scanned in chunks that overlap)."""
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(SCAN_CHUNK):
            if PRIVATE_KEY.search(tail + chunk):
                return True
            tail = chunk[-64:]
    return False


def member_problem(name: str) -> str | None:
    """Why an archive member may not be imported, or None when it fits the layout."""
    reason = never_shipped(name)
    if reason:
        return f"member {name!r} is not allowed in a workspace archive ({reason})"
    parts = PurePosixPath(name).parts
    if len(parts) == 1 and parts[0] in ARCHIVE_FILES:
        return None
    if parts and parts[0] in ("plan", "src") and len(parts) > 1:
        return None
    if len(parts) == 2 and parts[0] == "save" and parts[1].endswith(".pbuf"):
        return None
    return f"member {name!r} is not part of a workspace archive (expected only {LAYOUT})"


def nesting_problem(names: list[str]) -> str | None:
    """A member that is also used as a folder by another member (it could not be extracted)."""
    # Compared folded: on macOS or Windows 'Src' and 'src/' are the same entry.
    files = {name_key(n) for n in names}
    for name in names:
        for parent in list(PurePosixPath(name).parents)[:-1]:
            if name_key(str(parent)) in files:
                return f"member {str(parent)!r} is a file but {name!r} needs it to be a folder"
    return None
