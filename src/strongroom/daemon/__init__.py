"""`strongroom serve`: the scheduler, the job queue's workers and the checks
that raise alerts, in one long-running process per catalog."""

from strongroom.daemon.daemon import Daemon
from strongroom.daemon.lock import DaemonRunning, ServeLock

__all__ = ["Daemon", "DaemonRunning", "ServeLock"]
