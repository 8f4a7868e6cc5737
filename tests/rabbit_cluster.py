"""A RabbitMQ cluster (Debian's rabbitmq-server + rabbitmq_mqtt) started on loopback ports for the fleet tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.net import accepting as _accepting
from tests.net import free_port as _free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
HOST = socket.gethostname().split(".")[0]




def available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and any(Path("/usr/lib/rabbitmq/lib").glob(
        "rabbitmq_server-*/plugins/rabbitmq_mqtt-*"))


class RabbitNode:
    """One node: its own name, AMQP/dist/MQTT ports, data and log dirs; killed with SIGKILL like a crashed host."""

    def __init__(self, root: Path, index: int, env: dict[str, str]) -> None:
        self.name = f"pidf{index}-{os.getpid()}@{HOST}"
        self.mqtt_port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.mqtt_port}"
        folder = root / f"node{index}"
        folder.mkdir(parents=True)
        config = folder / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.default = 127.0.0.1:{_free_port()}\n"
                          f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
                          "mqtt.allow_anonymous = true\nloopback_users = none\n"
                          "log.console = false\nlog.file.level = warning\n", encoding="utf-8")
        self.env = {**env, "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                    "RABBITMQ_DIST_PORT": str(_free_port()), "RABBITMQ_CONFIG_FILE": str(config.with_suffix("")),
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "RABBITMQ_PID_FILE": str(folder / "rabbit.pid")}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {done.stderr or done.stdout}")
        return done.stdout

    def wait_up(self, timeout: float = 180) -> None:
        """Until the node's MQTT listener accepts (the plugin starts last, so the node is fully booted)."""
        deadline = time.monotonic() + timeout  # waiting on a real process's listener, not timing logic
        while not _accepting(self.mqtt_port):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up (logs in {self.env['RABBITMQ_LOG_BASE']})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: MQTT listener not up on {self.mqtt_port} within {timeout}s")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole node (the shell wrapper and the Erlang VM under it)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None


class RabbitCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        home = root / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"  # one cookie for every node and rabbitmqctl: they may talk
        cookie.write_text("PIDFAULTSCOOKIE", encoding="utf-8")
        cookie.chmod(0o400)
        plugins = root / "enabled_plugins"
        plugins.write_text("[rabbitmq_mqtt].\n", encoding="utf-8")
        env = {**os.environ, "HOME": str(home), "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
               "ERL_EPMD_PORT": str(_free_port()), "RABBITMQ_ALLOW_INPUT": ""}
        self.nodes = [RabbitNode(root, index, env) for index in range(size)]
        self.epmd: subprocess.Popen | None = None

    def start(self) -> None:
        # our own epmd on this cluster's port, as a child we can end by its id (the nodes would daemonise one)
        self.epmd = subprocess.Popen(["epmd", "-port", self.nodes[0].env["ERL_EPMD_PORT"]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.wait_up()
        # Every MQTT subscription queue mirrored on every node. The rabbitmq_mqtt plugin (3.10) declares a QoS 1
        # subscription as a durable classic queue on the node the client is on (auto-delete for a clean session,
        # but a crash deletes nothing); once that node dies, the client's next SUBSCRIBE on another node is refused
        # ("home node ... of durable queue ... is down") and the connection dropped, again and again. Mirrored,
        # the queue is promoted on a surviving node and the move goes through.
        first.ctl("set_policy", "--apply-to", "queues", "mqtt-subscriptions-everywhere", "^mqtt-subscription-",
                  '{"ha-mode":"all","ha-sync-mode":"automatic"}')

    def running_nodes(self) -> str:
        return self.nodes[0].ctl("cluster_status")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait()
