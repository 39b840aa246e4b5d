"""Running one command and measuring it; the page cache between commands.

A command's wall time is taken here; its CPU time (user + system) and peak
RSS come from GNU time, which forks the command from its own tiny process.
``os.wait4`` alone is not enough for the peak on Linux: a child started from
this process inherits this process's RSS high-water mark across exec, so
even ``true`` would report the harness's own peak. It is only the fallback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DROP_CACHES = "/proc/sys/vm/drop_caches"
LOG_TAIL_LINES = 15


@dataclass
class Command:
    argv: list[str]
    cwd: Path | None = None


@dataclass
class Measurement:
    seconds: float
    cpu_seconds: float  # user + system, of the command and its children
    peak_rss_mib: float
    exit_code: int


class RssMeter:
    """Measures a command's CPU time and peak RSS (see the module's docstring)."""

    def __init__(self, gnu_time: str | None):
        self.gnu_time = gnu_time

    @property
    def method(self) -> str:
        return "GNU time %M" if self.gnu_time else "os.wait4 ru_maxrss (includes the harness's peak)"

    def wrap(self, argv: list[str], usage_path: Path) -> list[str]:
        if not self.gnu_time:
            return argv
        return [self.gnu_time, "-f", "%U %S %M", "-o", str(usage_path), *argv]

    def cpu_and_peak(self, usage: os.struct_rusage, usage_path: Path) -> tuple[float, int]:
        """(CPU seconds, peak RSS in KiB)."""
        if not self.gnu_time:
            return usage.ru_utime + usage.ru_stime, usage.ru_maxrss
        # GNU time may write "Command exited with non-zero status N" first.
        words = usage_path.read_text().split()[-3:]
        try:
            user, system, peak = float(words[0]), float(words[1]), int(words[2])
        except (IndexError, ValueError):
            return usage.ru_utime + usage.ru_stime, 0
        return user + system, peak


def find_gnu_time() -> str | None:
    """Path of a working GNU time, installing Debian's 'time' if root."""
    if ensure_command("time", "time") is not None:
        return None
    path = shutil.which("time")
    probe = subprocess.run([path, "-f", "%U %S %M", "-o", os.devnull, "true"], capture_output=True)
    return path if probe.returncode == 0 else None


def run_measured(command: Command, env: dict[str, str], log_path: Path, meter: RssMeter) -> Measurement:
    """Run ``command`` with its output in ``log_path``; time it and take its peak RSS."""
    usage_path = log_path.with_suffix(".usage")
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(command.argv) + "\n").encode())
        log.flush()
        started = time.perf_counter()
        process = subprocess.Popen(meter.wrap(command.argv, usage_path), cwd=command.cwd, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu, peak_kib = meter.cpu_and_peak(usage, usage_path)
    return Measurement(seconds, cpu, peak_kib / 1024, process.returncode)


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def first_output_line(argv: list[str], env: dict[str, str] | None = None) -> str | None:
    """First line a quick command prints, or None if it fails."""
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


# --------------------------------------------------------------------------
# Installing peers


def install_debian_package(package: str) -> bool:
    """apt-get install ``package``, refreshing the package lists once if needed."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", package]
    print(f"installing {package} with apt-get ...", file=sys.stderr)
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    return subprocess.run(install, env=env, capture_output=True).returncode == 0


def ensure_command(binary: str, package: str) -> str | None:
    """Make ``binary`` available; return why it is not, or None if it is."""
    if shutil.which(binary):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"'{binary}' not found; install the Debian package '{package}' (needs root)"
    if install_debian_package(package) and shutil.which(binary):
        return None
    return f"'{binary}' not found and 'apt-get install {package}' failed"


# --------------------------------------------------------------------------
# The page cache


def drop_page_cache() -> str | None:
    """sync, then drop the page cache, dentries and inodes; return why not, or None.

    Writing the file works for root even where reading it is refused."""
    os.sync()
    try:
        with open(DROP_CACHES, "w") as control:
            control.write("3\n")
    except OSError as error:
        return f"{DROP_CACHES}: {error.strerror or error}"
    return None


def evict_files(roots: list[Path]) -> int:
    """Ask the kernel to drop the cached pages of every regular file below
    ``roots`` (posix_fadvise DONTNEED, after a sync so no page is dirty).
    Any user may do this to files they can read; directory entries and
    inodes stay cached. Returns the number of files."""
    os.sync()
    count = 0
    stack = [root for root in roots if root.is_dir()]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    try:
                        descriptor = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
                        count += 1
                    finally:
                        os.close(descriptor)
    return count


class PageCache:
    """What happens to the page cache before every step.

    ``always``: drop it (sync, then 3 into /proc/sys/vm/drop_caches), or stop
    if that is not permitted. ``auto``: drop it when permitted; when not, evict
    the data set's and the repositories' file pages with posix_fadvise, so no
    tool finds them cached from being written or read by an earlier tool.
    ``never``: leave it; the data set was read once after it was written, so
    every tool finds it warm (the old warm-cache numbers).
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.refusal = drop_page_cache() if mode != "never" else None
        if mode == "always" and self.refusal:
            raise SystemExit(f"--drop-caches always: cannot drop the page cache: {self.refusal}")
        self.drops = self.evictions = 0

    @property
    def dropping(self) -> bool:
        return self.mode != "never" and self.refusal is None

    def before_step(self, evictable: list[Path]) -> None:
        if self.dropping:
            refusal = drop_page_cache()
            if refusal:
                raise SystemExit(f"dropping the page cache stopped working: {refusal}")
            self.drops += 1
        elif self.mode == "auto":
            evict_files(evictable)
            self.evictions += 1

    def describe(self) -> str:
        if self.dropping:
            return ("cold: page cache, dentries and inodes dropped before every step "
                    f"(sync; 3 > {DROP_CACHES}; {self.drops} drops)")
        if self.mode == "auto":
            return (f"partly cold: dropping the page cache was refused ({self.refusal}); the data set's "
                    "and repositories' file pages were evicted with posix_fadvise(DONTNEED) before "
                    f"every step ({self.evictions} times), directory entries and inodes stayed cached")
        return ("warm: the page cache was never dropped (--drop-caches never); the data set was read "
                "once after it was written, so every tool found it in the page cache")
