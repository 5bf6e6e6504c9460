"""Start-up checks of saved state: every file the database points at is verified before a run resumes.

A crash (or a bad disk) can leave: half-written temporary files, spilled
updates with no database row, files of finished rounds not yet cleaned up, and
files whose bytes no longer match the checksums recorded when they were
written. The first three are removed. A damaged update is dropped, so its
sender is simply asked for it again. A damaged global model is restored from
its exported copy (``last_state_path`` is a byte copy of it) when that copy is
intact; otherwise the run stops with a message, and nothing is overwritten.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from fx_cli.aggregator.intake import spill_offsets
from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.modelstore import RoundModel, export_copy, model_problem
from fx_cli.aggregator.roundend import Exports
from fx_cli.aggregator.state import RESET_HINT, Snapshot, Store, UpdateRecord
from fx_cli.errors import FxError

log = logging.getLogger("fx.aggregator")


def recover(snap: Snapshot, store: Store, layout: StateLayout, exports: Exports | None) -> Snapshot:
    """The snapshot with every referenced file verified (or repaired, or dropped); stray files removed."""
    if snap.model is not None:
        snap.model = _checked_model(_relocated(snap.model, layout), exports.last if exports else None,
                                    "the current global model")
    if snap.best_model is not None:
        best = _relocated(snap.best_model, layout)
        try:
            snap.best_model = _checked_model(best, exports.best if exports else None, "the best model")
        except FxError as err:  # the best model is a by-product: losing it must not stop the run
            log.warning("%s; best_state_path is left as it is", err.message)
            snap.best_model, snap.best_score = None, None
    checked = (_usable(u, snap.model, store, layout) for u in snap.updates)
    snap.updates = [u for u in checked if u is not None]
    _remove_strays(layout, snap)
    return snap


def _relocated(model: RoundModel, layout: StateLayout) -> RoundModel:
    """The model at its recorded path, or under the layout's models folder when the workspace was moved."""
    path = layout.relocated_model(model.path)
    return model if path == model.path else replace(model, path=path)


def _checked_model(model: RoundModel, copy: Path | None, what: str) -> RoundModel:
    problem = model_problem(model)
    if problem is None:
        return model
    if copy is not None and copy.exists() and model_problem(model, copy) is None:
        log.warning("%s: %s; restored it from its intact copy %s", what, problem, copy)
        export_copy(copy, model.path)
        return model
    raise FxError(f"{what} of round {model.round + 1} is damaged: {problem}; the saved state was left untouched",
                  f"restore {model.path} (or {copy or 'its copy'}) from a backup to resume, or " + RESET_HINT)


def _usable(update: UpdateRecord, model: RoundModel | None, store: Store, layout: StateLayout) -> UpdateRecord | None:
    """The saved update if its file is intact; a damaged one is forgotten so that it is asked for again."""
    if update.path is None or model is None:
        return update
    path = layout.update_path(update.path, update.round)
    problem = _spill_problem(path, model, update)
    if problem is None:
        return replace(update, path=str(path))
    store.drop_update(update)
    path.unlink(missing_ok=True)
    log.warning("round %d: the saved '%s' result of '%s' is damaged (%s); dropped, '%s' will be asked for it "
                "again", update.round + 1, update.task, update.collaborator, problem, update.collaborator)
    return None


def _spill_problem(path: Path, model: RoundModel, update: UpdateRecord) -> str | None:
    if len(update.crcs) != len(model.entries):
        return f"{len(update.crcs)} checksums recorded for a model of {len(model.entries)} tensors"
    offsets = spill_offsets(model)
    entries = [replace(e, offset=offsets[e.name], crc32=crc) for e, crc in zip(model.entries, update.crcs)]
    return model_problem(replace(model, path=path, entries=tuple(entries)))


def _remove_strays(layout: StateLayout, snap: Snapshot) -> None:
    """Temporary files, spilled updates without a row and files of finished rounds: left by a crash."""
    layout.prune_updates(snap.round, [u.path for u in snap.updates if u.path])
    keep: list[Path | str] = [m.path for m in (snap.model, snap.best_model) if m is not None]
    layout.prune_models(keep + list(snap.agg_state.values()))
