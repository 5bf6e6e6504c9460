"""The shipped workspace templates (``plan_templates/``, installed inside the package)."""
from __future__ import annotations

from pathlib import Path

from fx_cli.errors import FxError

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "plan_templates"
DEFAULT_TEMPLATE = "keras/digits"


def list_templates() -> list[str]:
    """Template names, e.g. ``keras/digits``: every folder holding a ``.workspace`` file."""
    return sorted(str(p.parent.relative_to(TEMPLATES_DIR)) for p in TEMPLATES_DIR.rglob(".workspace"))


def template_dir(name: str) -> Path:
    """The folder of a template; an unknown name lists the valid ones."""
    names = list_templates()
    if name not in names:
        raise FxError(f"unknown template '{name}'", "choose one of: " + ", ".join(names))
    return TEMPLATES_DIR / name
