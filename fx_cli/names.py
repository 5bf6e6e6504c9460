"""Validation of collaborator names and FQDNs (DNS label rules)."""
from __future__ import annotations

import ipaddress
import re

from fx_cli.errors import FxError

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME_RULE = ("lower-case letters, digits and '-', 1-63 characters, "
             "starting and ending with a letter or digit")


def check_collaborator_name(name: str) -> str:
    """Return ``name`` when it is a valid collaborator name, else raise with the rule."""
    if not LABEL.match(name or ""):
        raise FxError(f"invalid collaborator name {name!r}: use {NAME_RULE}",
                      "pick a name such as 'site-1' or 'hospital-a'")
    return name


def check_fqdn(fqdn: str) -> str:
    """Return ``fqdn`` when it is a valid lower-case host name, else raise with the rule."""
    labels = (fqdn or "").rstrip(".").split(".")
    if not fqdn or len(fqdn) > 253 or not all(LABEL.match(label) for label in labels):
        raise FxError(f"invalid FQDN {fqdn!r}: each dot-separated label must use {NAME_RULE}; "
                      "at most 253 characters in all",
                      "pass --fqdn with the aggregator's host name, e.g. agg.example.org or localhost")
    return fqdn.rstrip(".")


def check_address(address: str) -> str:
    """An IP address as given, or a valid host name (lower-cased); else raise with the rule."""
    if is_ip(address):
        return address
    try:
        return check_fqdn((address or "").lower())
    except FxError:
        raise FxError(f"invalid aggregator address {address!r}: give an IP address or a host name whose "
                      f"dot-separated labels use {NAME_RULE}",
                      "pass the name collaborators dial, e.g. -a agg.example.org, -a localhost or -a 10.0.0.5") from None


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
