"""Simulation workers as Ray actors (``fx simulate --backend ray``): one actor per worker, never per collaborator.

Ray is imported only here, and this module only when the Ray backend is chosen.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any

from fx_cli.errors import FxError
from fx_cli.simulate.pool import Died, Report
from fx_cli.simulate.settings import SimulationSettings
from fx_cli.simulate.worker import Turn, Worker, WorkerSetup

SETTLE_S = 15.0  # how long to wait for resources of actors that just ended to come free

log = logging.getLogger("fx.simulate")
RAY_HINT = "install Ray with the ray extra: make install, or pip install -e '.[ray]' in fx's source folder"
CONNECT_TIMEOUT = 5.0


def import_ray() -> Any:
    """The ``ray`` module, typed ``Any`` at this edge: actor handles and ``.remote`` calls are dynamic."""
    import importlib

    try:
        return importlib.import_module("ray")
    except ImportError:
        raise FxError("--backend ray needs Ray, which is not installed", RAY_HINT) from None


class _Actor:
    """The body of one Ray actor: a ``Worker`` that lives as long as the actor."""

    def __init__(self, setup: WorkerSetup) -> None:
        import os
        from pathlib import Path

        os.chdir(Path(setup.plan_path).parent.parent)  # the workspace: data paths in plans are relative to it
        self.worker = Worker(setup)
        self.error: tuple[str, str] | None = None
        try:
            self.worker.start()
        except FxError as err:
            self.error = (err.message, err.hint or "")

    def ready(self) -> tuple[str, str] | None:
        return self.error

    def run(self, turn: Turn) -> Any:
        return self.worker.run(turn)


def check_address(address: str) -> None:
    """Refuse a Ray address that does not answer (instead of Ray's long retry loop)."""
    if address in ("auto", "local") or address.startswith("ray://") is False and ":" not in address:
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except (OSError, ValueError) as err:
        raise FxError(f"the Ray cluster at {address} does not answer ({err})",
                      "start it (`ray start --head` prints the address), check host and port, or leave --address "
                      "out to start a local Ray instance") from None


class RayPool:
    """``size`` Ray actors, each asking the plan's ``simulation.settings`` resources."""

    def __init__(self, setup: WorkerSetup, size: int, settings: SimulationSettings, address: str | None) -> None:
        if address is not None:
            check_address(address)
        ray = import_ray()
        self.ray = ray
        self.size = size
        self.batch = 1  # one call per turn: a dead actor's call names the collaborator it was running
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            local = {} if address else {"_node_ip_address": "127.0.0.1"}  # a local instance stays on loopback
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=False, **local)
        self._check_fits(settings, size)
        options: dict[str, Any] = {"num_cpus": settings.worker_cpus, "max_restarts": 0}
        if settings.worker_memory_mb:
            options["memory"] = settings.worker_memory_mb * 2**20
        actor_cls = ray.remote(**options)(_Actor)
        self.actors = [actor_cls.remote(setup) for _ in range(size)]
        self.pending: dict[Any, int] = {}
        try:
            for i, problem in enumerate(ray.get([a.ready.remote() for a in self.actors])):
                if problem is not None:
                    raise FxError(problem[0], problem[1] or None)
        except ray.exceptions.RayActorError as err:
            self.close()
            raise FxError(f"a Ray worker died while building the task runner: {err}",
                          "check the plan's task runner and data loader on the cluster's machines") from None
        except BaseException:
            self.close()
            raise

    def _check_fits(self, settings: SimulationSettings, size: int) -> None:
        need_cpus = settings.worker_cpus * size
        need_memory = settings.worker_memory_mb * 2**20 * size
        total = self.ray.cluster_resources()
        could_fit = need_cpus <= float(total.get("CPU", 0.0)) + 1e-9 and need_memory <= float(total.get("memory", 0.0))
        # Ray frees the resources of actors that just ended (an earlier run's workers) a moment later: when the
        # cluster as a whole can hold the workers, give them that moment before refusing.
        deadline = time.monotonic() + (SETTLE_S if could_fit else 0.0)
        while True:
            free = self.ray.available_resources()
            cpus, memory = float(free.get("CPU", 0.0)), float(free.get("memory", 0.0))
            if (need_cpus <= cpus + 1e-9 and need_memory <= memory) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        problems = []
        if need_cpus > cpus + 1e-9:
            problems.append(f"{size} workers x {settings.worker_cpus:g} CPUs = {need_cpus:g} CPUs, the cluster has "
                            f"{float(total.get('CPU', 0.0)):g} in all, {cpus:g} free")
        if need_memory > memory:
            problems.append(f"{size} workers x {settings.worker_memory_mb} MB = {need_memory / 2**20:.0f} MB, the "
                            f"cluster has {memory / 2**20:.0f} MB free")
        if problems:
            self._shutdown()
            fit = int(min(cpus / settings.worker_cpus if settings.worker_cpus else size,
                          memory / (settings.worker_memory_mb * 2**20) if settings.worker_memory_mb else size))
            raise FxError("the requested Ray workers do not fit the cluster: " + "; ".join(problems),
                          f"use --workers {max(fit, 1) if fit >= 1 else 1} or fewer, lower "
                          "simulation.settings.worker_cpus / worker_memory_mb in plan/plan.yaml, or add machines "
                          "to the cluster")

    def submit(self, worker: int, turns: list[Turn]) -> None:
        for turn in turns:
            self.pending[self.actors[worker].run.remote(turn)] = worker

    def wait(self, timeout: float) -> list[tuple[int, Report]]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        out: list[tuple[int, Report]] = []
        for ref in ready:
            worker = self.pending.pop(ref)
            try:
                out.append((worker, self.ray.get(ref)))
            except self.ray.exceptions.RayActorError as err:
                out.append((worker, Died(worker, f"the Ray actor died: {str(err).splitlines()[0]}")))
        return out

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._shutdown()

    def _shutdown(self) -> None:
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
