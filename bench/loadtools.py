"""Load-generation helpers for the benchmarks: wrk runs and what /proc tells about a server.

Every figure here is read from wrk's report or from /proc; nothing is sampled over the network
except by wrk itself, against 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class WrkResult:
    server: str
    path: str
    gzip: bool  # whether the client sent Accept-Encoding: gzip (wrk does not by default)
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: dict[str, int]
    total_errors: int
    ratio_to_nginx: float | None = None
    # CPU time the server's processes spent per request: steadier than requests/s on a busy machine.
    cpu_us_per_request: float | None = None
    # Connections left waiting in the kernel's accept queue in every sample of the run (should be 0):
    # connections the server never served, which wrk's figures do not show.
    unaccepted: int = 0


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by a process and its descendants."""
    ticks = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_percent(seconds: float = 1.0) -> float:
    """How idle the CPUs are over a short interval: other work on the machine skews every figure."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return round(100 * (idle1 - idle0) / max(1, total1 - total0), 1)


def accept_queue(port: int) -> int:
    """Connections the kernel completed but the server has not accepted yet, on a loopback port.

    wrk never reports a connection that is never served: its request simply waits, unseen by
    the latency figures. A non-empty accept queue during a run is the sign of that.
    """
    waiting = 0
    local = f"{0x0100007F:08X}:{port:04X}"  # 127.0.0.1 as /proc/net/tcp writes it
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":  # LISTEN: rx_queue is the accept queue
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


def rss_mib(root: int) -> tuple[float, int]:
    """Resident memory of a process and all its descendants (MiB), and how many processes."""
    total_kib, count = 0, 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
                    count += 1
    return round(total_kib / 1024, 1), count


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return round(float(match.group(1)) * UNITS_MS[match.group(2)], 3)


def parse_wrk(output: str, server: str, path: str, connections: int, gzip: bool = False) -> WrkResult:
    """Requests/s, p50/p99 and every kind of error from wrk's ``--latency`` report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if rps is None or total is None:
        raise RuntimeError(f"wrk printed no result for {server} {path}:\n{output}")
    percentiles = dict(re.findall(r"^\s*(\d+)%\s+(\S+)\s*$", output, re.MULTILINE))
    if "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"wrk printed no latency distribution for {server} {path}:\n{output}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0}
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors is not None:
        for key, value in zip(("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True):
            errors[key] = int(value)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors["non_2xx_3xx"] = int(non_2xx.group(1))
    return WrkResult(
        server=server,
        path=path,
        gzip=gzip,
        connections=connections,
        duration_s=round(_ms(total.group(2)) / 1000, 2),
        requests=int(total.group(1)),
        requests_per_s=round(float(rps.group(1)), 1),
        latency_p50_ms=_ms(percentiles["50"]),
        latency_p99_ms=_ms(percentiles["99"]),
        errors=errors,
        total_errors=sum(errors.values()),
    )


def wrk_command(
    port: int, path: str, connections: int, duration: int, *, threads: int = 2, gzip: bool = False
) -> list[str]:
    headers = ["-H", "Accept-Encoding: gzip"] if gzip else []
    return [
        shutil.which("wrk") or "/usr/bin/wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "2s",
        "--latency",
        *headers,
        f"http://{HOST}:{port}{path}",
    ]


def run_wrk(
    server: str, port: int, path: str, connections: int, duration: int, *, gzip: bool = False, pid: int | None = None
) -> WrkResult:
    cpu_before = cpu_seconds(pid) if pid else 0.0
    proc = subprocess.Popen(
        wrk_command(port, path, connections, duration, gzip=gzip),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[int] = []
    deadline = time.monotonic() + duration + 60
    time.sleep(min(1.0, duration / 4))
    while proc.poll() is None and time.monotonic() < deadline:
        samples.append(accept_queue(port))
        time.sleep(0.25)
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr or stdout}")
    result = parse_wrk(stdout, server, path, connections, gzip)
    result.unaccepted = min(samples, default=0)
    if pid and result.requests:
        result.cpu_us_per_request = round((cpu_seconds(pid) - cpu_before) / result.requests * 1e6, 1)
    return result


def median_run(rounds: list[WrkResult]) -> WrkResult:
    """The median of each figure over the rounds; errors are added up, not averaged."""
    first = rounds[0]
    errors = {key: sum(r.errors[key] for r in rounds) for key in first.errors}
    return WrkResult(
        server=first.server,
        path=first.path,
        gzip=first.gzip,
        connections=first.connections,
        duration_s=round(sum(r.duration_s for r in rounds), 2),
        requests=sum(r.requests for r in rounds),
        requests_per_s=statistics.median(r.requests_per_s for r in rounds),
        latency_p50_ms=statistics.median(r.latency_p50_ms for r in rounds),
        latency_p99_ms=statistics.median(r.latency_p99_ms for r in rounds),
        errors=errors,
        total_errors=sum(errors.values()),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request or 0.0 for r in rounds) or None,
        unaccepted=max(r.unaccepted for r in rounds),
    )


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: with 20 samples, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@contextlib.contextmanager
def workspace(keep: bool, *, prefix: str) -> Iterator[Path]:
    """A temporary directory for one benchmark run (logs, databases), removed unless kept."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # any straggler of the group
