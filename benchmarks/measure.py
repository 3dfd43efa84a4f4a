"""One contender's run as a child process, measured from outside: wall seconds, CPU seconds and peak RSS.

`os.wait4` gives the CPU time of exactly that child (RUSAGE_CHILDREN would add up every child waited for so
far). Its `ru_maxrss` is not the child's own peak: Linux carries the parent's resident high-water mark into a
child across fork/vfork and exec, so with the sandboxes of a large tenant in this process every child would
report at least this process's peak. The peak is therefore the child's own `VmHWM` (the high-water mark of
the memory map exec gave it), which `write_report` adds to the report as `own_peak_rss_mb` unless the child
measured it itself when its measured work ended (before reading back what it did, such as a run's event log).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent


class ChildFailed(RuntimeError):
    """A measured child exited non-zero or timed out; the message ends with the tail of its log."""


@dataclass(frozen=True)
class ProcessUsage:
    wall_s: float
    cpu_s: float  # user + system
    peak_rss_mb: float
    exit_code: int
    report: dict[str, Any] = field(default_factory=dict)  # what the child wrote about itself

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_measured(argv: list[str], *, log: Path, report: Path, env: dict[str, str] | None = None,
                 timeout_s: float = 3600.0, python: str | None = None) -> ProcessUsage:
    """Run `python argv...` (a benchmark script and its arguments) to completion; the child writes a JSON
    report of its own to `report`. Raises ChildFailed on a non-zero exit or a timeout."""
    command = [python or sys.executable, *argv]
    child_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(REPO), str(BENCHMARKS)])}
    report.unlink(missing_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env, cwd=REPO,
                                   start_new_session=True)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout_s:
                os.killpg(process.pid, signal.SIGKILL)
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise ChildFailed(f"{' '.join(argv[:2])} timed out after {timeout_s:.0f} s\n{_tail(log)}")
            time.sleep(0.02)
    wall = time.monotonic() - started
    exit_code = os.waitstatus_to_exitcode(status)
    process.returncode = exit_code  # reaped here, so Popen must not wait for it again
    if exit_code != 0:
        raise ChildFailed(f"{' '.join(argv[:2])} exited {exit_code}\n{_tail(log)}")
    written = json.loads(report.read_text()) if report.exists() else {}
    if "own_peak_rss_mb" not in written:
        raise ChildFailed(f"{' '.join(argv[:2])} wrote no report with its own peak memory\n{_tail(log)}")
    return ProcessUsage(wall_s=round(wall, 3), cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
                        peak_rss_mb=written["own_peak_rss_mb"], exit_code=exit_code, report=written)


def process_memory_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`, ...), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (the benchmarks measure memory on Linux)")


def own_peak_rss_mb() -> float:
    """This process's resident high-water mark since its exec (VmHWM), in MB: its own peak, not its parent's."""
    return process_memory_mb("VmHWM")


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """What a child says about itself (run ids, step timings, counts) and its own peak memory, for the parent;
    written last, when the child's work is done. A report that names its `own_peak_rss_mb` (taken when the
    measured work ended) keeps it; `process_peak_rss_mb` is the whole process's, the report's making included."""
    peak = own_peak_rss_mb()
    Path(path).write_text(json.dumps({"own_peak_rss_mb": peak, **report, "process_peak_rss_mb": peak}, indent=2,
                                     default=str))
