"""A real Redis Cluster on loopback: 3 masters and 3 replicas, AOF on, one process each.

The nodes are ``redis-server --cluster-enabled yes`` processes joined by ``redis-cli
--cluster create ... --cluster-replicas 1 --cluster-yes``. Every wait is on something the
cluster reports (``cluster_state:ok`` on every node, every slot on a running master),
never a sleep. Helpers cover what the cluster tests do to it: find the master of a
channel's slot, pick channels on each master, SIGKILL a master and wait for its replica
to take over, restart a node, and move one slot to another master. Processes are ended
by their own PID; ``close()`` removes their data directories.

The helpers block (they poll the nodes): async tests call them through
``asyncio.to_thread`` when something else must keep running meanwhile.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis
from redis.crc import key_slot

from tests.support.redis_server import LocalRedisServer

SLOTS = 16384
BUS_PORT_OFFSET = 10_000
FIRST_CLUSTER_PORT = 10_000
"""Above the well-known and most registered service ports; the bus ports go to 20,000 and up."""
NODE_TIMEOUT_MS = 1000
"""How long a silent master takes to be declared failed; failover follows within ~1-2 s."""

T = TypeVar("T")


def cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too, both below
    the kernel's range of ephemeral ports: there, any connection made meanwhile (by the
    other test process, say) may take the bus port before the node binds it, or before a
    stopped node binds it again."""
    lowest_ephemeral = _ephemeral_ports()[0]
    for _ in range(200):
        port = random.randrange(FIRST_CLUSTER_PORT, lowest_ephemeral - BUS_PORT_OFFSET)
        if port not in taken and _bindable(port) and _bindable(port + BUS_PORT_OFFSET):
            return port
    raise RuntimeError(
        f"no free port pair (port, port + 10000) from {FIRST_CLUSTER_PORT} "
        f"below the ephemeral ports ({lowest_ephemeral})"
    )


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster: {what} not reached within {timeout:.0f}s")
        time.sleep(0.05)


class ClusterNode(LocalRedisServer):
    """One ``redis-server --cluster-enabled yes`` of the cluster."""

    def __init__(self, port: int) -> None:
        super().__init__(
            port=port,
            appendfsync="everysec",
            options=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica takes over however long it was cut off: the tests kill masters.
                "--cluster-replica-validity-factor", "0",
                # Shards that lost a master and have no replica left do not stop the others.
                "--cluster-require-full-coverage", "no",
                # Replicas stay where they were put, so the tests know the topology.
                "--cluster-allow-replica-migration", "no",
                # A (re)joining replica syncs at once instead of waiting 5 s for company.
                "--repl-diskless-sync-delay", "0",
            ],
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<ClusterNode 127.0.0.1:{self.port}>"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the process stays, reads nothing and answers nothing until ``resume()``."""
        assert self.process is not None, f"{self} is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def command(self, *args: str | int | bytes) -> object:
        """One command on a short-lived connection (these helpers are not on a hot path)."""
        with self.client() as client:
            return client.execute_command(*args)

    def cluster_info(self) -> dict[str, str]:
        reply = self.command("CLUSTER", "INFO")
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def replication(self) -> dict[str, object]:
        """``INFO replication`` as a dict."""
        with self.client() as client:
            info: dict[str, object] = client.info("replication")
            return info

    def role_ready(self) -> bool:
        """A master, or a replica whose link to its master is up (it holds what it acked)."""
        info = self.replication()
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    def node_id(self) -> str:
        reply = self.command("CLUSTER", "MYID")
        return reply.decode() if isinstance(reply, bytes) else str(reply)


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES`` as a node sees another."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        slots = []
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being imported or migrated, not owned
            first, _, last = part.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id=fields[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                connected=fields[7] == "connected",
                slots=tuple(slots),
            )
        )
    return views


def channel_slot(channel: str) -> int:
    """The slot of every key of ``channel``: they all share the ``{channel}`` hash tag."""
    return key_slot(channel.encode())


class LocalRedisCluster:
    """Six cluster nodes on free loopback ports: 3 masters with a replica each."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed: apt-get install redis-server")
        self.cli = cli
        self.masters_wanted = masters
        self.replicas_per_master = replicas_per_master
        ports: set[int] = set()
        self.nodes: list[ClusterNode] = []
        for _ in range(masters * (1 + replicas_per_master)):
            port = cluster_port(ports)
            ports.add(port)
            self.nodes.append(ClusterNode(port))

    @property
    def url(self) -> str:
        """Every node as a comma-separated seed list, the way REDIS_URL names a cluster."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [
                self.cli, "--cluster", "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas_per_master),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout[-3000:]}")
        self.wait_healthy()
        wait_until(self._every_replica_placed, 30, "every node sees each master's replicas")

    def _every_replica_placed(self) -> bool:
        for node in self.nodes:
            views = self.view(node)
            masters = [view for view in views if view.is_master and view.slots]
            replicas = [view.master_id for view in views if not view.is_master]
            if len(masters) != self.masters_wanted or any(
                replicas.count(master.node_id) != self.replicas_per_master for master in masters
            ):
                return False
        return True

    # -- what the cluster reports ---------------------------------------------------

    def running_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def node_at(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def view(self, of: ClusterNode | None = None) -> list[NodeView]:
        """``CLUSTER NODES`` as ``of`` (default: the first running node) sees it."""
        node = of or self.running_nodes()[0]
        reply = node.command("CLUSTER", "NODES")
        return parse_cluster_nodes(reply.decode() if isinstance(reply, bytes) else str(reply))

    def masters(self) -> list[ClusterNode]:
        """The running masters that own slots, ordered by their first slot."""
        owners = sorted(
            (view.slots[0][0], view.port) for view in self.view() if view.is_master and view.slots
        )
        return [self.node_at(port) for _, port in owners]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        views = self.view()
        master_id = next(view.node_id for view in views if view.port == master.port)
        return [
            self.node_at(view.port)
            for view in views
            if view.master_id == master_id and not view.failed
        ]

    def master_for_slot(self, slot: int, seen_by: ClusterNode | None = None) -> ClusterNode:
        """The master that owns ``slot``, as ``seen_by`` (default: any running node) sees it."""
        for view in self.view(seen_by):
            if view.is_master and any(first <= slot <= last for first, last in view.slots):
                return self.node_at(view.port)
        raise LookupError(f"slot {slot} has no master")

    def master_of(self, channel: str) -> ClusterNode:
        """The master that owns ``channel``'s slot (history key and live channel alike)."""
        return self.master_for_slot(channel_slot(channel))

    def channels_on_each_master(self, per_master: int = 1, stem: str = "ch") -> list[list[str]]:
        """``per_master`` channel names on each master, in the order of ``masters()``."""
        masters = self.masters()
        owners = self._slot_owners()
        found: list[list[str]] = [[] for _ in masters]
        for name in _names(stem):
            index = masters.index(self.node_at(owners[channel_slot(name)]))
            if len(found[index]) < per_master:
                found[index].append(name)
            if all(len(names) == per_master for names in found):
                return found
        raise AssertionError("unreachable: names cover every slot")

    def _slot_owners(self) -> dict[int, int]:
        owners = {}
        for view in self.view():
            if view.is_master:
                for first, last in view.slots:
                    owners.update(dict.fromkeys(range(first, last + 1), view.port))
        return owners

    def _healthy(self) -> bool:
        running = {node.port for node in self.running_nodes()}
        for node in self.running_nodes():
            if not node.role_ready():
                return False
            info = node.cluster_info()
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            views = self.view(node)
            owned = sum(
                last - first + 1
                for view in views
                if view.is_master and not view.failed and view.port in running
                for first, last in view.slots
            )
            if owned != SLOTS:
                return False
            # Every running node is known and connected (no handshake still in flight).
            live = {view.port for view in views if not view.failed}
            if not running <= live:
                return False
        return True

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every running node says ``cluster_state:ok``, sees every slot on a running master,
        and, if it is a replica, is in sync with its master."""
        wait_until(self._healthy, timeout, "every node ok, every slot on a running master")

    # -- what the tests do to it ----------------------------------------------------

    def kill_master(self, master: ClusterNode, timeout: float = 30) -> ClusterNode:
        """SIGKILL ``master``; return its replica once that one owns the slots everywhere."""
        slot = next(view.slots[0][0] for view in self.view() if view.port == master.port)
        master.kill()

        def promoted() -> ClusterNode | None:
            if not self._healthy():
                return None
            owner = self.master_for_slot(slot)
            return owner if owner is not master else None

        return wait_until(promoted, timeout, f"a replica of {master} promoted")

    def restart(self, node: ClusterNode, timeout: float = 30) -> None:
        """Start ``node`` again (SIGTERM first if it runs); it rejoins with its node id.

        Returns once the cluster is healthy again and, if the node came back as a replica,
        once it is in sync with its master (so it holds what the master acknowledged).
        """
        node.stop()
        node.start()

        wait_until(self._healthy, timeout, f"{node} rejoined")

    def migrate_slot(self, slot: int, target: ClusterNode, timeout: float = 30) -> None:
        """Move ``slot`` and its keys to ``target``, as ``redis-cli --cluster reshard`` does."""
        migration = self.begin_migration(slot, target)
        migration.move_keys()
        migration.finish(timeout)

    def begin_migration(self, slot: int, target: ClusterNode) -> SlotMigration:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner; nothing moved yet."""
        source = self.master_for_slot(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on {target}")
        return SlotMigration(self, slot, source, target)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SlotMigration:
    """One slot on its way from ``source`` to ``target``, in the steps Redis defines.

    Between ``move_keys()`` and ``finish()`` the keys are on the target while the slot
    still belongs to the source: clients get ``ASK`` redirections. After ``finish()`` every
    node maps the slot to the target: clients still on the old map get ``MOVED``.
    """

    def __init__(
        self, cluster: LocalRedisCluster, slot: int, source: ClusterNode, target: ClusterNode
    ) -> None:
        self.cluster = cluster
        self.slot = slot
        self.source = source
        self.target = target
        self._source_id = source.node_id()
        self._target_id = target.node_id()
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", self._source_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", self._target_id)

    def move_keys(self) -> int:
        """MIGRATE every key of the slot to the target; returns how many moved."""
        moved = 0
        while True:
            keys = self.source.command("CLUSTER", "GETKEYSINSLOT", self.slot, 100)
            assert isinstance(keys, list)
            if not keys:
                return moved
            self.source.command(
                "MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000, "KEYS", *keys
            )
            moved += len(keys)

    def finish(self, timeout: float = 30) -> None:
        """Assign the slot to the target on every master, then wait until all nodes agree."""
        self.target.command("CLUSTER", "SETSLOT", self.slot, "NODE", self._target_id)
        self.source.command("CLUSTER", "SETSLOT", self.slot, "NODE", self._target_id)
        for master in self.cluster.masters():
            if master not in (self.source, self.target):
                master.command("CLUSTER", "SETSLOT", self.slot, "NODE", self._target_id)

        def agreed() -> bool:
            return self.cluster._healthy() and all(
                self.cluster.master_for_slot(self.slot, seen_by=node) is self.target
                for node in self.cluster.running_nodes()
            )

        wait_until(agreed, timeout, f"slot {self.slot} owned by {self.target} on every node")


def _names(stem: str) -> Iterator[str]:
    number = 0
    while True:
        yield f"{stem}-{number}"
        number += 1
