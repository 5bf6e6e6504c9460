"""Is ``save/init.pbuf`` intact, and was it made for this plan's model?

``fx plan initialize`` records in the model file's checksum record a digest of
the plan sections that define the model (``task_runner``, ``data_loader``).
Before a federation starts (``fx aggregator start``, ``fx workspace export``)
the file must carry fx's checksum record (so a file cut at a record boundary
is caught) and, when it records a digest, the same digest as the plan now.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from fx_cli.errors import FxError
from fx_cli.plan.identity import canonical_bytes

if TYPE_CHECKING:
    from fx_cli.plan.loader import Plan

MODEL_SECTIONS = ("task_runner", "data_loader")
SPEC_PREFIX = "model-sections-sha256:"


def model_spec(plan: "Plan") -> str:
    """A digest of the plan sections that define the model's tensors."""
    sections = {name: {"template": plan.template(name), "settings": plan.settings(name)} for name in MODEL_SECTIONS}
    return SPEC_PREFIX + hashlib.sha256(canonical_bytes(sections)).hexdigest()


def check_init_model(plan: "Plan", init: Path) -> None:
    """Refuse an initial model that is damaged, cut short, or made for another model than the plan's."""
    from fx_cli.tensors.pbuf import model_trailer

    trailer = model_trailer(init)  # headers, count and length are checked; ModelFileError names the damage
    if trailer is None:
        raise FxError(f"{init} has no fx checksum record: it was cut short, or not written by `fx plan initialize`",
                      "run `fx plan initialize` again (with `-i FILE` to start from existing weights)")
    if trailer.spec and trailer.spec != model_spec(plan):
        raise FxError(f"{init} was made for another model: the plan's {' / '.join(MODEL_SECTIONS)} sections "
                      "changed since `fx plan initialize` wrote it",
                      f"run `fx plan initialize` again; to keep these weights: `fx plan initialize -i {init}` "
                      "(it checks every tensor name and shape against the plan's model)")
