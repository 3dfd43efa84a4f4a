"""Who holds a document being pushed: the run id of a `zk push` says on which machine and in which process it
runs (`zk-push-<host>-<pid>-<hex>`), so that `zk push --take-over` can check that a holder that died is gone;
any other run id is a Dagster run, whose liveness only its instance knows."""

from __future__ import annotations

import os
import socket
import uuid

ZK_PUSH_PREFIX = "zk-push-"


def push_run_id() -> str:
    """This process's run id: where it runs, so that a take-over can check the process is gone."""
    return f"{ZK_PUSH_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def zk_push_process(run_id: str) -> tuple[str, int] | None:
    """(host, pid) of a `zk push` run id; None for any other run (a Dagster run, an older `zk push`)."""
    if not run_id.startswith(ZK_PUSH_PREFIX):
        return None
    parts = run_id.removeprefix(ZK_PUSH_PREFIX).rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def zk_push_alive(run_id: str) -> bool | None:
    """Whether the `zk push` holding a document still runs: checked for a process of this machine, unknown
    (None) for another machine's or for a Dagster run (this process does not ask the Dagster instance)."""
    process = zk_push_process(run_id)
    if process is None or process[0] != socket.gethostname():
        return None
    try:
        os.kill(process[1], 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    return True
