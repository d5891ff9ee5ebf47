"""Reports the sandbox from the inside into /mnt/export/sandbox.json."""

import json
import os
import socket
from pathlib import Path

targets = json.loads(Path("targets.json").read_text())


def read(path):
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def status_field(name):
    for line in read("/proc/self/status").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def can_write(path):
    try:
        with open(os.path.join(path, ".probe"), "w") as handle:
            handle.write("x")
        os.unlink(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False


def connects(host, port, timeout=0.5):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            # A port in the ephemeral range can "connect" to itself (TCP simultaneous open).
            return "self" if sock.getsockname() == sock.getpeername() else "open"
        except OSError as exc:
            return exc.strerror or type(exc).__name__


def open_ports(host):
    found = []
    for port in range(1, 65536):
        if port % 8192 == 0:
            print(f"scanned {host} up to port {port}", flush=True)
        if connects(host, port, timeout=0.2) == "open":
            found.append(port)
    return found


def dns(name):
    try:
        return [a[4][0] for a in socket.getaddrinfo(name, 443)]
    except OSError as exc:
        return f"failed: {exc}"


mounts = [line.split()[:4] for line in read("/proc/self/mounts").splitlines()]
report = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "groups": os.getgroups(),
    "cap_eff": status_field("CapEff"),
    "cap_prm": status_field("CapPrm"),
    "cap_bnd": status_field("CapBnd"),
    "no_new_privs": status_field("NoNewPrivs"),
    "mounts": mounts,
    "docker_socket_visible": any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock")),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "ipv4_routes": read("/proc/net/route").splitlines()[1:],
    "ipv6_routes": [r for r in read("/proc/net/ipv6_route").splitlines() if not r.rstrip().endswith(" lo")],
    "dns": dns(targets["dns_name"]),
    "loopback_open_ports": open_ports("127.0.0.1"),
    "host_listener": {host: connects(host, targets["host_port"]) for host in targets["host_addresses"]},
    "writable": {p: can_write(p) for p in ("/", "/opt/submission", "/mnt/dataset", "/mnt/export", "/tmp", "/etc")},
    "dataset_listing": sorted(os.listdir("/mnt/dataset"))[:5],
    "cgroup": {
        "memory_limit": read("/sys/fs/cgroup/memory/memory.limit_in_bytes").strip(),
        "memsw_limit": read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").strip(),
        "pids_max": read("/sys/fs/cgroup/pids/pids.max").strip(),
        "cpu_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").strip(),
        "cpu_period": read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").strip(),
    },
    "shm_bytes": os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
    "tmp_bytes": os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize,
    "export_bytes": os.statvfs("/mnt/export").f_blocks * os.statvfs("/mnt/export").f_frsize,
    "environment": sorted(os.environ),
    "hosts_file": read("/etc/hosts"),
}
Path("/mnt/export/sandbox.json").write_text(json.dumps(report, indent=1))
print("sandbox reported")
