"""Workers as Ray actors across a cluster (``--ray [ADDRESS]``): the body of a worker process,
driven by async actor calls instead of a pipe.

Commands are actor calls (``command``); records come back to the driver by a long poll
(``take``: up to BATCH_RECORDS records, within BATCH_WAIT_S of the first). Actors are placed with
the SPREAD strategy, one CPU each. Per-node clocks never mix (perfbench/workers/clocks.py): the
driver sends the shared start as wall-clock time, each actor turns it into its own perf counter,
and each actor's records are shifted onto the driver's perf counter by its constant anchor offset.
An actor that dies (a node lost, ``ray.kill``) is a lost worker like a dead process.

Ray is imported here only, and only when a pool of actors is opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import socket
import threading
from typing import Any

from perfbench.core.version import __version__
from perfbench.core.errors import ConfigError, TargetError
from perfbench.config.option_values import RAY_LOCAL, RAY_MISSING
from perfbench.core.signals import STOP_SIGNALS
from perfbench.workers.body import Message, WorkerBody, WorkerSetup
from perfbench.workers.clocks import Anchor, shift_record, start_as_wall, start_on_own_clock
from perfbench.workers.pool import Deliver

ACTOR_CPUS = 1  # what each actor asks of the scheduler: a worker keeps a core busy
IDLE_WAIT_S = 0.25  # a take() with nothing finished returns after this (many actors must not flood the driver)
PLACE_TIMEOUT_S = 60.0  # every actor must be up by then (a cluster without the CPUs would wait forever)
EXIT_WAIT_S = 5.0
PROBE_TIMEOUT_S = 5.0  # a cluster address must accept a connection this fast


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def connect(address: str, cpus: int) -> tuple[Any, bool]:
    """Ray, connected to ``address``; True when this call made the connection (``close`` ends it).

    A process already connected (a program embedding perfbench, the tests) keeps its connection.
    """
    if address not in (RAY_LOCAL, "auto"):
        _probe(address)
    if address == RAY_LOCAL:
        # Read by Ray at import (here and in the processes it starts): without it a local instance
        # advertises the machine's first network address instead of 127.0.0.1; and a private
        # instance has no business reporting usage.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if address == RAY_LOCAL:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # the same, where Ray was imported before us (read at call time)
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        if address == RAY_LOCAL:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - Ray says "cannot connect" with several exception types: one line (exit 3)
        logging.getLogger(__name__).debug("ray.init failed", exc_info=True)
        hint = ("start a cluster ('ray start --head') or use --ray local" if address == "auto"
                else "check the address and that the cluster is up")
        raise TargetError(f"--ray {address}: cannot connect to Ray ({_first_line(exc)}); {hint}") from None
    finally:
        # Ray's driver puts a handler of its own under SIGTERM that dumps a stack and kills the process:
        # no summary, no records of what was in flight. The run's own (stop like Ctrl-C) go back on.
        for sig, handler in handlers.items():
            if handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(sig, handler)
    return ray, True


def _probe(address: str) -> None:
    """Fail at once where nothing listens: Ray itself retries a dead address for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise TargetError(f"--ray {address}: nothing answers there ({exc.strerror or type(exc).__name__}); "
                          "check the address and that the cluster is up") from None


def to_driver_clock(message: Message, offset_ns: int) -> Message:
    """A message from an actor with its records' stamps on the driver's perf counter."""
    kind, value = message
    if kind != "records" or not offset_ns:
        return message
    records, sent, in_flight = value
    return kind, ([shift_record(record, offset_ns) for record in records], sent, in_flight)


class RayWorker:
    """One worker as an async Ray actor: its engine runs on the actor's event loop."""

    def __init__(self, setup: WorkerSetup) -> None:
        self._anchor = Anchor.now()
        self._body = WorkerBody(setup)

    async def hello(self) -> dict[str, Any]:
        """Open the engine; say where this actor runs and what its clock anchor is."""
        import ray

        await self._body.open()
        return {"anchor": (self._anchor.wall_ns, self._anchor.perf_ns), "node_id": ray.get_runtime_context().get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "host": platform.node(), "pid": os.getpid(),
                "perfbench_version": __version__}

    async def command(self, kind: str, value: Any) -> None:
        if kind == "exit":
            await self._body.close()
            return
        if kind == "start":
            plan, start_wall_ns = value
            value = start_on_own_clock(plan, start_wall_ns, self._anchor)
        self._body.command(kind, value)

    async def take(self) -> list[Message]:
        return await asyncio.to_thread(self._body.outbox.take, IDLE_WAIT_S)


class RayTransport:
    """``count`` RayWorker actors on the cluster at ``address`` (``count`` 0: one per live node)."""

    def __init__(self, address: str, count: int, setup: WorkerSetup) -> None:
        self._address = address
        self._count = count
        self._setup = setup
        self._ray: Any = None
        self._connected = False
        self._driver = Anchor.now()
        self._actors: list[Any] = []
        self._infos: list[dict[str, Any]] = []
        self._intakes: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Future[Any]] = set()

    async def open(self, deliver: Deliver) -> list[dict[str, Any]]:
        ray, self._connected = connect(self._address, max(self._count, os.cpu_count() or 1))
        self._ray = ray
        count = self._count or sum(1 for node in ray.nodes() if node.get("Alive"))
        setup = self._setup.for_workers(count)
        remote = ray.remote(RayWorker).options(num_cpus=ACTOR_CPUS, scheduling_strategy="SPREAD")
        self._actors = [remote.remote(setup) for _ in range(count)]
        try:
            hellos = await asyncio.wait_for(asyncio.gather(*(_result(a.hello.remote()) for a in self._actors)), PLACE_TIMEOUT_S)
        except asyncio.TimeoutError:
            cpus = ray.cluster_resources().get("CPU", 0)
            raise TargetError(f"--ray: not all of {count} actors started within {PLACE_TIMEOUT_S:.0f} s (each takes "
                              f"{ACTOR_CPUS} CPU, the cluster has {cpus:g}); use fewer --workers or add nodes") from None
        except ray.exceptions.RayError as exc:
            raise TargetError(f"--ray: a Ray actor could not start ({_first_line(exc)}); "
                              f"perfbench {__version__} must be installed on every node") from None
        for number, hello in enumerate(hellos):
            if hello["perfbench_version"] != __version__:
                raise TargetError(f"--ray: node {hello['node_ip']} runs perfbench {hello['perfbench_version']}, this driver "
                                  f"{__version__}; install the same version on every node")
            offset = Anchor(*hello["anchor"]).offset_to(self._driver)
            self._infos.append({"worker": number, "transport": "ray", "node_id": hello["node_id"], "node_ip": hello["node_ip"],
                                "host": hello["host"], "pid": hello["pid"], "clock_offset_ns": offset})
        self._intakes = [asyncio.ensure_future(self._intake(n, deliver)) for n in range(count)]
        return [dict(info) for info in self._infos]

    async def _intake(self, number: int, deliver: Deliver) -> None:
        actor, offset = self._actors[number], self._infos[number]["clock_offset_ns"]
        try:
            while True:  # ends when the actor's outbox ends, when it dies, or when close() cancels it
                messages = await _result(actor.take.remote())
                if not messages:
                    return
                for message in messages:
                    deliver(number, *to_driver_clock(message, offset))
        except self._ray.exceptions.RayError as exc:
            deliver(number, "lost", died_because(exc))

    def send(self, number: int, command: str, value: Any) -> None:
        if command == "start":
            value = start_as_wall(value, self._driver)
        call = asyncio.ensure_future(_result(self._actors[number].command.remote(command, value)))
        self._calls.add(call)
        call.add_done_callback(_settled(self._calls))

    @property
    def actors(self) -> list[Any]:
        """The actors' handles, by worker number."""
        return list(self._actors)

    def kill(self, number: int) -> None:
        self._ray.kill(self._actors[number], no_restart=True)

    def describe(self, number: int) -> str:
        info = self._infos[number] if number < len(self._infos) else {}
        return f"Ray actor {number} (node {info.get('node_ip', '?')}, pid {info.get('pid', '?')})"

    async def close(self) -> None:
        for task in self._intakes:
            task.cancel()
        await asyncio.gather(*self._intakes, return_exceptions=True)
        if self._actors:
            exits = asyncio.gather(*(_result(a.command.remote("exit", None)) for a in self._actors), return_exceptions=True)
            try:
                await asyncio.wait_for(exits, EXIT_WAIT_S)  # an actor closes its connections and its outbox
            except asyncio.TimeoutError:
                pass
            for actor in self._actors:
                self._ray.kill(actor, no_restart=True)
        for call in list(self._calls):
            call.cancel()
        if self._connected:
            self._ray.shutdown()  # a local instance stops; a cluster only loses this driver
            self._connected = False


def _result(ref: Any) -> asyncio.Future[Any]:
    """An ObjectRef as an asyncio future (Ray Client's refs too)."""
    return asyncio.wrap_future(ref.future())


def _settled(calls: set[asyncio.Future[Any]]) -> Any:
    def done(call: asyncio.Future[Any]) -> None:
        calls.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: a dead actor's failed call is reported by its intake, once
    return done


def died_because(exc: BaseException) -> str:
    """Why an actor is gone, in one line (Ray's own text spans several)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith("The actor is dead because"):
            return "the Ray actor died: " + line.removeprefix("The actor is dead because").strip().rstrip(".")
    return f"the Ray actor died ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:200]

