"""One simulation worker: the task runner built once, virtual collaborators run through it in turn.

A turn is one collaborator's tasks of one round, exactly as ``fx collaborator
start`` runs them (``TaskExecutor``, the plan's ``opt_treatment``, delta
updates, compression), except that results are not sent over a socket: they
are encoded as a collaborator would send them and streamed through the
aggregator's own ``UpdateIntake`` into the spill file the engine granted.
Between turns nothing of a collaborator stays in memory: its data loader is
rebuilt from its data path, and its local optimizer state (``CONTINUE_LOCAL``)
is read from and written back to ``local_state/optimizer/<name>.npz``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.aggregator.intake import Spilled, UpdateIntake, check_result
from fx_cli.aggregator.metrics import json_safe
from fx_cli.aggregator.modelstore import RoundModel
from fx_cli.aggregator.outcomes import Refused
from fx_cli.atomic import atomic_write
from fx_cli.collaborator.tasks import TaskExecutor, TaskOutput, applies_local, encode_update, is_training
from fx_cli.errors import FxError
from fx_cli.privacy.local import local_privacy
from fx_cli.transport.chunks import StreamError, tensor_frames, trailer_of
from fx_cli.transport.serde import Frame

log = logging.getLogger("fx.simulate")
CHUNK = 1 << 20  # bytes per frame handed to the intake (no network: one large chunk is cheapest)


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs to build its runner (picklable; paths are absolute)."""

    plan_path: str


@dataclass(frozen=True)
class Turn:
    """One virtual collaborator's tasks of one round, with the spill files the engine granted."""

    collaborator: str
    data_path: str
    round: int
    rounds_to_train: int
    tasks: tuple[str, ...]
    already_received: tuple[str, ...]
    model: RoundModel
    targets: dict[str, str]  # task -> spill path, for each task whose result the engine still wants
    opt_state: str  # where this collaborator's local optimizer state lives (StateLayout.opt_state)


@dataclass(frozen=True)
class TaskDone:
    task: str
    data_size: int
    metrics: dict[str, float]
    spilled: Spilled = Spilled(None, 0, ())
    refused: str = ""  # why the intake refused the result (as it would refuse a collaborator's upload)
    # Secure aggregation: the plain update delta (float64, the model's tensors in order), masked by the simulator
    # before anything of it reaches the engine (fx_cli/simulate/secagg.py); no spill file then.
    delta: np.ndarray | None = None


@dataclass(frozen=True)
class TurnDone:
    collaborator: str
    round: int
    results: tuple[TaskDone, ...] = ()
    seconds: float = 0.0
    error: str = ""  # the turn failed (a task raised): the message of the FxError
    hint: str = ""


@dataclass
class Worker:
    """Runs turns; ``run`` never raises for a task's failure, it reports it in ``TurnDone.error``."""

    setup: WorkerSetup
    runner: Any = None
    plan: Any = None
    loader_cls: Any = None
    _model_path: str = ""
    _model: dict[str, np.ndarray] = field(default_factory=dict)

    def start(self) -> None:
        from fx_cli.compression import resolve_pipeline
        from fx_cli.plan import load_plan
        from fx_cli.plan.templates import resolve_class
        from fx_cli.runners.build import build_runner

        self.plan = load_plan(Path(self.setup.plan_path))
        self.runner = build_runner(self.plan)  # no data: each turn brings its collaborator's loader
        self.loader_cls = resolve_class(self.plan.template("data_loader"), self.plan.workspace,
                                        "data_loader.template")
        self.privacy = local_privacy(self.plan.config)
        settings = self.plan.collaborator
        self.opt_treatment, self.delta = settings.opt_treatment, settings.use_delta_updates
        self.loader_settings = self.plan.settings("data_loader")
        self.logs = self.plan.workspace / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pipeline = resolve_pipeline(self.plan.config.get("compression_pipeline", {}).get("template"),
                                         self.plan.settings("compression_pipeline"), self.plan.workspace)
        self.pipelines = {self.pipeline.name}
        from fx_cli.secagg.settings import secagg_of

        self.secagg = secagg_of(self.plan.config) is not None

    def run(self, turn: Turn) -> TurnDone:
        started = time.monotonic()
        try:
            results = self._run(turn)
        except FxError as err:
            return TurnDone(turn.collaborator, turn.round, error=err.message, hint=err.hint or "")
        return TurnDone(turn.collaborator, turn.round, tuple(results), time.monotonic() - started)

    def _global(self, model: RoundModel) -> dict[str, np.ndarray]:
        """The round's global model, read once per round by each worker."""
        if self._model_path != str(model.path):
            self._model = {}
            self._model = dict(model.tensors())
            self._model_path = str(model.path)
        return self._model

    def _run(self, turn: Turn) -> list[TaskDone]:
        self.runner.data_loader = self.loader_cls(data_path=turn.data_path, **self.loader_settings)
        local_opt = self.opt_treatment == "CONTINUE_LOCAL"
        if local_opt:
            self._load_optimizer(turn.collaborator, Path(turn.opt_state))
        model = self._global(turn.model)
        received = set(turn.already_received)
        executor = TaskExecutor(self.runner, self.plan.tasks, self.opt_treatment, turn.collaborator, self.privacy)
        needs_local = any(t not in received and applies_local(executor.spec(t)) for t in turn.tasks)
        final = turn.round >= turn.rounds_to_train
        done: list[TaskDone] = []
        lines: list[dict[str, Any]] = []
        for task in turn.tasks:
            spec = executor.spec(task)
            if task in received and not (is_training(spec) and needs_local):
                continue
            out = executor.run(task, turn.round, model)
            lines.append({"round": turn.round + 1, "final": final, "task": out.task, "metrics": out.metrics,
                          "data_size": out.data_size, "seconds": round(out.seconds, 4),
                          "cpu_s": round(out.cpu_seconds, 4)})
            if task in turn.targets and self.secagg and is_training(spec) and not final:
                done.append(_update_delta(out, model))
            elif task in turn.targets:  # under secure aggregation no plain update leaves: metrics only
                done.append(self._deliver(turn, dataclasses.replace(out, tensors={}) if self.secagg else out, model))
        append_jsonl_lines(self.logs / f"{turn.collaborator}_metrics.jsonl", lines)
        if local_opt:
            self._save_optimizer(Path(turn.opt_state))
        self.runner.data_loader = None  # nothing of this collaborator stays until its next turn
        return done

    def _deliver(self, turn: Turn, out: TaskOutput, model: dict[str, np.ndarray]) -> TaskDone:
        """The result through the aggregator's intake, as an upload of it would go."""
        try:
            check_result(out.task, out.data_size, out.metrics)
            tensors = encode_update(out, model, self.pipeline, self.delta)
            frames: list[Frame | None] = []
            for meta, payload in tensors:
                frames.extend(tensor_frames(meta, payload, CHUNK))
            frames.append(trailer_of(m for m, _ in tensors))
            # Like the engine's state (EngineOptions.power_safe=False): safe against kill -9, not power loss.
            intake = UpdateIntake(turn.model, Path(turn.targets[out.task]), self.pipelines, len(tensors),
                                  power_safe=False)
            spilled = intake.receive(iter(frames))
        except Refused as err:
            return TaskDone(out.task, out.data_size, out.metrics, refused=err.message)
        except StreamError as err:
            return TaskDone(out.task, out.data_size, out.metrics,
                            refused=f"update from '{turn.collaborator}' rejected: {err}")
        return TaskDone(out.task, out.data_size, out.metrics, spilled)

    # --- local optimizer state (opt_treatment: CONTINUE_LOCAL) ---------------------------------

    def _load_optimizer(self, name: str, path: Path) -> None:
        if not path.exists():
            self.runner.reset_optimizer()  # a collaborator's first turn starts from a fresh optimizer
            return
        try:
            with np.load(path, allow_pickle=False) as saved:
                state = {k: saved[k] for k in saved.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise FxError(f"the local optimizer state of '{name}' ({path}) cannot be read: {err}",
                          f"delete {path} to restart that collaborator's optimizer, or `fx aggregator reset` "
                          "to start the simulation over") from None
        self.runner.set_tensors({**self.runner.get_tensors(), **state}, with_opt_vars=True)

    def _save_optimizer(self, path: Path) -> None:
        names = set(self.runner.optimizer_tensor_names())
        if not names:
            return
        state = {k: v for k, v in self.runner.get_tensors(with_opt_vars=True).items() if k in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            np.savez(fh, allow_pickle=False, **state)


def _update_delta(out: TaskOutput, model: dict[str, np.ndarray]) -> TaskDone:
    """Secure aggregation: the training result as the delta a collaborator masks (``SecAggStages.send_masked``)."""
    try:
        check_result(out.task, out.data_size, out.metrics)
    except Refused as err:
        return TaskDone(out.task, out.data_size, out.metrics, refused=err.message)
    wrong = [n for n in model if n not in out.tensors or np.shape(out.tensors[n]) != model[n].shape]
    if wrong or set(out.tensors) - set(model):
        return TaskDone(out.task, out.data_size, out.metrics, refused="its tensors do not match the global model's "
                        f"names and shapes ({', '.join(wrong or sorted(set(out.tensors) - set(model)))})")
    delta = np.concatenate([(np.asarray(out.tensors[n], np.float64) - np.asarray(model[n], np.float64)).ravel()
                            for n in model])
    if not np.isfinite(delta).all():
        return TaskDone(out.task, out.data_size, out.metrics, refused="its tensors hold NaN or infinite values")
    return TaskDone(out.task, out.data_size, out.metrics, delta=delta)


def append_jsonl_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """The turn's lines of ``logs/<name>_metrics.jsonl`` (as the collaborator writes them), in one append."""
    if records:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records))
