"""Which lines of an imported ``requirements.txt`` may reach pip.

An archive comes from another site, so its requirements are untrusted input.
pip reads much more than package names from such a file: local paths and
folders (whose ``setup.py`` runs at install), URLs and VCS links, ``name @ url``
direct references, options (``-e``, ``--index-url``, ``-r``, ``-f``, ...),
environment variables (``${VAR}``) and backslash line continuations.  Only a
plain PEP 508 line passes: a name, optional extras, optional version
specifiers and an optional environment marker.  Everything else is refused
and named, and never handed to pip.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_PLAIN = re.compile(
    rf"^(?P<name>{_NAME})\s*"
    rf"(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
    rf"(?:\(?\s*{_VERSION}(?:\s*,\s*{_VERSION})*\s*\)?)?\s*"
    r"(?:;\s*[A-Za-z0-9_.'\"<>=!~ ()-]+)?$")


@dataclass(frozen=True)
class Refused:
    """A requirements line that will not reach pip, and why."""

    number: int
    line: str
    why: str


def _why(line: str) -> str:
    if re.search(r"(^|\s)--?[A-Za-z]", line):
        return "a pip option (it can change where packages come from, or install a local folder)"
    if "://" in line or line.startswith(("git+", "hg+", "svn+", "bzr+")):
        return "a URL (pip would download and run whatever it points at)"
    if "@" in line:
        return "a direct reference 'name @ url' (pip would fetch and build it)"
    if "/" in line or line.startswith((".", "~")) or line.endswith((".whl", ".zip", ".gz")):
        return "a local path (pip would run that folder's setup code)"
    if "$" in line:
        return "an environment variable, which pip would expand from this host"
    if line.endswith("\\"):
        return "a line continuation (the next line would be read as part of this one)"
    return "not a plain 'name[extras] specifier ; marker' requirement"


def _strip_comment(line: str) -> str:
    # pip drops '#' to the end of line when it starts the line or follows whitespace.
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def check_lines(text: str) -> tuple[list[str], list[Refused]]:
    """Split ``text`` into plain requirement lines (comments removed) and refused ones."""
    accepted: list[str] = []
    refused: list[Refused] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        if _PLAIN.match(line) and "$" not in line and not raw.rstrip().endswith("\\"):
            accepted.append(line)
        else:
            refused.append(Refused(number, raw.strip(), _why(line)))
    return accepted, refused


def describe(refused: list[Refused]) -> str:
    """One indented line per refused requirement."""
    return "\n".join(f"  line {r.number}: {r.line!r}: {r.why}" for r in refused)
