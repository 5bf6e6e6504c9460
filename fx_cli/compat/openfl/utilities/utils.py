"""Small helpers of ``openfl.utilities``."""
from __future__ import annotations

from typing import Iterable


def change_tags(tags: Iterable[str], *, add_field: str | None = None, remove_field: str | None = None) -> tuple[str, ...]:
    """``tags`` with one field added (kept unique) and/or one removed, sorted as OpenFL keeps them."""
    result = list(tags)
    if add_field is not None and add_field not in result:
        result.append(add_field)
    if remove_field is not None:
        if remove_field not in result:
            raise ValueError(f"{remove_field} not in tags {tuple(tags)}")
        result.remove(remove_field)
    return tuple(sorted(result))
