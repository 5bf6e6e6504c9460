"""Hierarchical federations for tests: one CA, a top workspace, region workspaces, and their sites.

Layout: ``root/top/ws`` (the CA, the top aggregator; its cols.yaml lists the
regions), ``root/<region>/ws`` (a copy of the top workspace whose plan listens on
its own port and has an ``upstream`` section; its cols.yaml lists its sites; its
``plan/upstream.yaml`` is the parent's plan). Every certificate comes from the
top's CA, so a region holds the server certificate for ``localhost`` and a
client certificate in its own name. Everything listens on localhost.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.plan.participants import write_cols
from tests.runtime_helpers import edit_plan, free_port, fx_in, make_workspace


def add_region(parent: Path, root: Path, name: str, children: list[str], local_rounds: int,
               **sections: dict[str, Any]) -> Path:
    """A region workspace under ``root/name`` whose parent is the workspace ``parent``, made by `fx plan region`.

    (A copy stands for the parent's imported archive; it also carries the test CA's certificates.)
    """
    ws = root / name / "ws"
    shutil.copytree(parent, ws, ignore=shutil.ignore_patterns("local_state", "logs"))
    fx_in(ws, "plan", "region", "-n", name, "-a", "localhost", "--local-rounds", str(local_rounds),
          "--port", str(free_port()))
    if sections:
        edit_plan(ws, **sections)
    write_cols(ws / "plan" / "cols.yaml", children)
    return ws


def two_regions(root: Path, *, rounds: int = 2, local_rounds: int = 1, num_params: int = 1000,
                **sections: dict[str, Any]) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """(top workspace, {region: workspace}, {site: workspace it runs in}) for regions a and b with two sites each."""
    shards = {"a1": 1, "a2": 2, "b1": 3, "b2": 4}
    regions = {"region-a": ["a1", "a2"], "region-b": ["b1", "b2"]}
    top = make_workspace(root / "top", list(regions), rounds=rounds, shards=shards, num_params=num_params,
                         certify=[*regions, *shards], **sections)
    region_ws = {name: add_region(top, root, name, sites, local_rounds) for name, sites in regions.items()}
    site_ws = {site: region_ws[name] for name, sites in regions.items() for site in sites}
    return top, region_ws, site_ws


def load_model(path: Path) -> dict[str, np.ndarray]:
    from fx_cli import load_tensors

    return dict(load_tensors(path))
