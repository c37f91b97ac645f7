"""Connecting to a Ray cluster in bounded time, and on loopback when the cluster lives there.

``ray.init(address=...)`` of an address where no GCS answers retries for minutes (measured:
about nine, a warning every 5 s), and with short GCS timeouts it aborts the whole process from
C++ instead of raising. So :func:`check_address` first tries a TCP connect, then connects once
in a child process (``python -m ppl_vae.compare.ray_connect ADDRESS``) with Ray's GCS
timeouts shortened (:data:`GCS_TIMEOUTS`) and a hard limit of :data:`PROBE_SECONDS`; only a
cluster that answered there is joined by the driver.

Ray turns a loopback address (``127.0.0.1``, ``localhost``) into the machine's outward
interface before it connects (``ray._private.services.resolve_ip_for_localhost``), so a
cluster whose nodes bind 127.0.0.1 (``ray start --head --node-ip-address 127.0.0.1``,
``ray.cluster_utils.Cluster``) would never answer. For a loopback address :func:`init_ray`
turns that mapping off for the connect and gives the driver 127.0.0.1 as its own address.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GCS_TIMEOUTS = {"RAY_gcs_rpc_server_connect_timeout_s": "5",
                "RAY_gcs_rpc_server_reconnect_timeout_s": "5",
                "RAY_gcs_server_request_timeout_seconds": "5"}
"""Ray's GCS connect / reconnect / request timeouts (seconds) in the probe: a GCS that does
not answer ends it in about 16 s."""
PROBE_SECONDS = 20.0
TCP_SECONDS = 5.0
LOOPBACK = "127.0.0.1"


def is_loopback(address: str) -> bool:
    host = _host_port(address)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


def check_address(address: str) -> dict[str, float]:
    """The resources (``CPU``, ``GPU``, ...) of the Ray cluster at ``address``, or a
    ConnectionError naming the address and the fix within :data:`PROBE_SECONDS` + 5 s."""
    host, port = _host_port(address)
    if port is not None:
        try:
            socket.create_connection((host, port), timeout=TCP_SECONDS).close()
        except OSError as err:
            raise _unreachable(address, str(err)) from None
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **GCS_TIMEOUTS,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")]))}
    try:
        probe = subprocess.run([sys.executable, "-m", __name__, address], env=env,
                               capture_output=True, text=True, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        raise _unreachable(address, f"its GCS did not answer within {PROBE_SECONDS:.0f} s") \
            from None
    lines = probe.stdout.strip().splitlines()
    if probe.returncode != 0 or not lines:
        gcs = "Failed to connect to GCS" in probe.stderr or "GCS" in probe.stderr
        errors = [line.strip() for line in probe.stderr.splitlines() if "Error" in line]
        reason = ("a server listens there, but no Ray GCS answered it" if gcs or not errors
                  else f"Ray could not connect: {errors[-1][:200]}")
        raise _unreachable(address, reason)
    return json.loads(lines[-1])


def _unreachable(address: str, reason: str) -> ConnectionError:
    return ConnectionError(
        f"no Ray cluster answers at --address {address} ({reason}); start one there with "
        "`ray start --head` (on one machine: `ray start --head --node-ip-address 127.0.0.1`) "
        "and check that this machine reaches it, or leave out --address to run on a local Ray")


def _host_port(address: str) -> tuple[str, int | None]:
    """``(host, port)`` of a ``host:port`` address; port None for ``auto`` or a URI."""
    if address == "auto" or "://" in address:
        return address, None
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return address, None


@contextlib.contextmanager
def _keep_loopback(address: str | None) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``ray.init`` that keep a loopback connection on loopback."""
    if address is not None and not is_loopback(address):
        yield {}
        return
    from ray._private import ray_constants

    enabled = getattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    ray_constants.ENABLE_RAY_CLUSTER = False  # resolve_ip_for_localhost: stay on 127.0.0.1
    try:
        yield {"_node_ip_address": LOOPBACK}
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             env_vars: dict[str, str] | None = None) -> None:
    """``ray.init`` of the cluster at ``address``, or of a local head on loopback with
    ``num_cpus`` CPUs and no dashboard; workers get ``env_vars``."""
    import ray

    options: dict[str, Any] = {"log_to_driver": False,
                               "runtime_env": {"env_vars": dict(env_vars or {})}}
    if address is None:
        # "local": a new head even where `ray start` left a cluster running
        options |= {"address": "local", "num_cpus": num_cpus or os.cpu_count(),
                    "include_dashboard": False}
    else:
        options["address"] = address
    with warnings.catch_warnings(), _keep_loopback(address) as loopback:
        # Ray starts its processes with fork + exec, which JAX's at-fork hook warns about
        # when JAX is loaded; nothing runs between the fork and the exec.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        ray.init(**options, **loopback)


if __name__ == "__main__":  # the probe of check_address
    import ray

    init_ray(sys.argv[1])
    print(json.dumps(ray.cluster_resources()))
    ray.shutdown()
