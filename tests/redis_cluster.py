"""A private 3-master Redis Cluster on loopback for the tests: three `redis-server --cluster-enabled yes`
on free ports (each with its bus on a second free port), joined by `redis-cli --cluster create`,
without persistence; stopped and its directory removed at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.integration.gateway_proc import free_port


@dataclass(frozen=True)
class RedisTarget:
    """Where a test's Redis is: the `redis_target` fixture gives the suite's Redis, then the cluster."""

    url: str
    cluster: bool  # the URL names a Redis Cluster node (SWITCHYARD_REDIS_CLUSTER)


class RedisCluster:
    def __init__(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.skip("no redis-server / redis-cli binary")
        self.server, self.cli = server, cli
        self.ports = [free_port() for _ in range(3)]
        self.bus_ports = [free_port() for _ in range(3)]
        self.dir = Path(tempfile.mkdtemp(prefix="sy-redis-cluster-"))
        self.url = f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> RedisCluster:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RedisCluster:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            subprocess.run(
                [
                    self.server,
                    "--port",
                    str(port),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(bus),
                    "--cluster-config-file",
                    str(self.dir / f"nodes-{port}.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir),
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(self.dir / f"{port}.pid"),
                    "--logfile",
                    str(self.dir / f"{port}.log"),
                ],
                check=True,
            )
        for port in self.ports:
            self._wait(lambda c: c.ping(), port)
        # What `redis-cli --cluster create` does, without its one-second polls: a third of the slots
        # to each node, then every node meets the first.
        bounds = [0, 5461, 10923, 16384]
        for i, port in enumerate(self.ports):
            self._cli(port, "cluster", "addslotsrange", str(bounds[i]), str(bounds[i + 1] - 1))
            if i:
                self._cli(port, "cluster", "meet", "127.0.0.1", str(self.ports[0]), str(self.bus_ports[0]))
        for port in self.ports:
            self._wait(lambda c: c.cluster("info")["cluster_state"] == "ok", port)
        return self

    def _cli(self, port: int, *args: str) -> None:
        subprocess.run([self.cli, "-p", str(port), *args], check=True, stdout=subprocess.DEVNULL, timeout=10)

    def _wait(self, ready: object, port: int) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, decode_responses=True)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if ready(client):  # type: ignore[operator]
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Redis Cluster node 127.0.0.1:{port} did not become ready")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        for port in self.ports:
            pidfile = self.dir / f"{port}.pid"
            if not pidfile.exists():
                continue
            # The servers daemonized, so they are not our children: signalled by the pid they wrote.
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
