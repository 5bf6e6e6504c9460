"""The one owner of the files under ``local_state/``: where each kind lives, and which ones are strays.

Like ``pki/store.py``'s ``Layout`` for certificates, nothing else builds these
paths by hand: the coordinator (where an update spills), the round closer
(next model, server-optimizer state, clean-up), recovery (relocation, strays),
reset, and the simulator (local optimizer state of virtual collaborators).

    local_state/aggregator.db            SQLite state (``state.Store``)
    local_state/models/round_<R>.pbuf    the global model that is the input of round R (0-based)
    local_state/models/round_<R>.sourced.pbuf  the input of round R given from outside the round before it
                                         (a middle aggregator's parent, a round-robin resource)
    local_state/models/resource_<K>.pbuf the latest model of round-robin resource K
    local_state/models/aggstate_<task>_r<R>.npz   server-optimizer state saved with round R
    local_state/updates/r<R>/<col>.<task>.<token>.f32   a received update, spilled (float32, model order)
    local_state/updates/.spare/*.spare   spills of the last finished round, to be overwritten by the next ones
    local_state/optimizer/<col>.npz      local optimizer state of a simulated collaborator (opt_treatment)
    local_state/privacy/noise.key        the run's secret seed of central-DP noise (0600; fx_cli/privacy/central.py)
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger("fx.aggregator")

MODEL_PREFIX = "round_"
SPARE_MODEL = ".spare.pbuf"  # no model: bytes to be overwritten by the next model file (ARCHITECTURE.md)
AGG_STATE_PREFIX = "aggstate_"
# Spills of a finished round, kept as bytes for the next round's uploads to overwrite (``take_spare_spill``):
# on some machines (VMs that hand freed memory back) writing into new page-cache pages costs twice as much.
SPARE_SPILLS = ".spare"
SPARE_MIN_BYTES = 4 << 20  # smaller spills are not kept: the renames would cost more than the pages save


@dataclass(frozen=True)
class StateLayout:
    """Paths of one run's saved state; ``root`` is the folder of the state database (or a temporary one)."""

    root: Path

    @classmethod
    def of_database(cls, db_path: Path) -> "StateLayout":
        return cls(db_path.parent)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def updates(self) -> Path:
        return self.root / "updates"

    @property
    def optimizer(self) -> Path:
        return self.root / "optimizer"

    @property
    def privacy(self) -> Path:
        return self.root / "privacy"

    @property
    def noise_key(self) -> Path:
        return self.privacy / "noise.key"

    def folders(self) -> tuple[Path, ...]:
        """Every folder of files this layout owns (what a reset deletes besides the database)."""
        return self.models, self.updates, self.optimizer, self.privacy

    def model(self, round_num: int) -> Path:
        """The global model that is the input of ``round_num`` (0-based)."""
        return self.models / f"{MODEL_PREFIX}{round_num}.pbuf"

    def sourced_model(self, round_num: int) -> Path:
        """The input of ``round_num`` when an ``engine.ModelSource`` gives it (a parent's model, a resource)."""
        return self.models / f"{MODEL_PREFIX}{round_num}.sourced.pbuf"

    def resource_model(self, resource: int) -> Path:
        """The latest model of round-robin resource ``resource``."""
        return self.models / f"resource_{resource}.pbuf"

    def agg_state(self, task: str, round_num: int) -> Path:
        """The server-optimizer state of ``task`` saved with the model of ``round_num``."""
        return self.models / f"{AGG_STATE_PREFIX}{task}_r{round_num}.npz"

    def round_updates(self, round_num: int) -> Path:
        return self.updates / f"r{round_num}"

    def new_update(self, round_num: int, collaborator: str, task: str) -> Path:
        """A fresh, unique spill path for one received result."""
        return self.round_updates(round_num) / f"{collaborator}.{task}.{time.time_ns():x}.f32"

    def update_path(self, recorded: str, round_num: int) -> Path:
        """A recorded spill path, or the same file name under this layout when the workspace was moved."""
        path = Path(recorded)
        moved = self.round_updates(round_num) / path.name
        return moved if not path.exists() and moved.exists() else path

    def relocated_model(self, recorded: Path) -> Path:
        """A recorded model path, or the same file name under this layout when the workspace was moved."""
        moved = self.models / recorded.name
        return moved if not recorded.exists() and moved.exists() else recorded

    def opt_state(self, collaborator: str) -> Path:
        return self.optimizer / f"{collaborator}.npz"

    # --- clean-up -----------------------------------------------------------------------------

    def drop_round_updates(self, round_num: int, keep_spares: bool = False) -> None:
        """The spilled updates of a round that is over; with ``keep_spares`` they become the spares (one round's
        worth at most)."""
        folder, spares = self.round_updates(round_num), self.updates / SPARE_SPILLS
        self.drop_spare_spills()  # left over: fewer results came this round than the round before
        if keep_spares and folder.is_dir():
            spares.mkdir(exist_ok=True)
            for path in folder.iterdir():
                if path.suffix == ".f32" and path.is_file():
                    os.replace(path, spares / f"{path.stem}.spare")
        shutil.rmtree(folder, ignore_errors=True)

    def drop_spare_spills(self) -> None:
        """The spares of ``drop_round_updates``: at the end of a run, or when they were not all used."""
        spares = self.updates / SPARE_SPILLS
        for path in spares.iterdir() if spares.is_dir() else ():
            path.unlink(missing_ok=True)

    def spare_model(self) -> Path:
        """A model file no longer needed, kept to be overwritten by the next one (``atomic_write(reuse=)``)."""
        return self.models / SPARE_MODEL

    def prune_models(self, keep: Iterable[Path | str]) -> None:
        """Delete model and server-optimizer files not in ``keep``, and temporary files left by a crash.

        One old model file becomes the spare instead (``spare_model``), when there is none.
        """
        names = {Path(p).name for p in keep}
        if not self.models.is_dir():
            return
        spare = self.spare_model()
        for path in sorted(self.models.iterdir()):
            stray = path.name.startswith(".") and ".tmp-" in path.name
            old = path.name.startswith((MODEL_PREFIX, AGG_STATE_PREFIX)) and path.name not in names
            if old and path.name.startswith(MODEL_PREFIX) and path.suffix == ".pbuf" and not spare.exists():
                os.replace(path, spare)
            elif stray or old:
                path.unlink(missing_ok=True)

    def prune_updates(self, current_round: int, keep: Iterable[Path | str]) -> None:
        """Delete spilled updates of other rounds, and of this round those no saved result refers to."""
        names = {Path(p).name for p in keep}
        current = self.round_updates(current_round).name
        if not self.updates.is_dir():
            return
        for folder in self.updates.iterdir():
            if folder.name != current:
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    folder.unlink(missing_ok=True)
                continue
            for path in folder.iterdir():
                if path.name not in names:
                    log.info("removed %s (no saved result refers to it)", path)
                    path.unlink(missing_ok=True)

    def remove_all(self) -> list[Path]:
        """Delete every folder this layout owns; returns the ones that existed."""
        removed = []
        for folder in self.folders():
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(folder)
        return removed


def take_spare_spill(spill: Path, into: Path) -> bool:
    """Rename a spare spill to ``into`` (a new ``.part`` of ``spill``, ``updates/r<R>/<name>``); False if none.

    Several uploads may take spares at once: a spare another one renamed first is skipped.
    """
    spares = spill.parent.parent / SPARE_SPILLS
    try:
        names = os.listdir(spares)
    except OSError:
        return False
    for name in names:
        try:
            os.replace(spares / name, into)
            return True
        except FileNotFoundError:
            continue
    return False


def scratch_layout(parent: Path) -> StateLayout:
    """A layout in a new temporary folder under ``parent`` (evaluation runs, persist_checkpoint: false)."""
    import tempfile

    parent.mkdir(parents=True, exist_ok=True)
    return StateLayout(Path(tempfile.mkdtemp(prefix="run-", dir=parent)))

