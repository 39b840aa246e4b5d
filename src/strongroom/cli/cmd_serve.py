"""`strongroom serve`: the daemon, in the foreground, until a signal stops it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.errors import StrongroomError, UsageError
from strongroom.words import plural

DEFAULT_LISTEN = "127.0.0.1:9180"
log = logging.getLogger("strongroom.daemon")


def _config_file(given: str | None) -> Path | None:
    """The configuration file serve applies: the one named (--config or
    STRONGROOM_CONFIG_FILE or STRONGROOM_CONFIG), which must exist, else the
    default one if it exists."""
    from strongroom.configfile import locate
    from strongroom.paths import config_file_named_in
    path = locate(given, os.environ)
    if given or config_file_named_in(os.environ):
        if not path.is_file():
            raise UsageError(f"configuration file {path} " + ("is not a regular file" if path.exists() else
                                                              "does not exist"))
        return path
    return path if path.is_file() else None


@click.command("serve")
@manage_options
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Jobs that run at the same time.")
@click.option("--tick", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between two looks at the schedules.")
@click.option("--wake-grace", type=click.FloatRange(0), default=300.0, show_default=True, metavar="SECONDS",
              help="After the start or a wake-up, retry a target that does not answer for this long "
                   "without using up attempts.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where /metrics and /healthz answer (port 0 picks a free one).")
@click.option("--no-listen", is_flag=True, help="Serve no HTTP endpoints.")
@click.option("--allow-remote", is_flag=True,
              help="Allow --listen on an address other than loopback (a token is then required).")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="A 0600 file holding the bearer token the endpoints require "
                   "(or STRONGROOM_SERVE_TOKEN).")
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="The configuration file applied at start and on SIGHUP (else STRONGROOM_CONFIG_FILE or STRONGROOM_CONFIG, "
                   "else ~/.config/strongroom/strongroom.toml when it exists).")
@click.option("--prune", is_flag=True,
              help="When applying the file, remove what the catalog has and the file does not.")
@click.option("--no-console", is_flag=True, help="Serve /metrics and /healthz only, not the web console.")
@click.option("--console-origin", metavar="URL",
              help="The console's address as browsers reach it through a TLS proxy, e.g. "
                   "https://backup.example.org: the only Host and Origin it accepts; https makes "
                   "its cookies Secure.")
def serve(m: Manage, jobs, tick, wake_grace, listen, no_listen, allow_remote, token_file, config_path,
          prune, no_console, console_origin) -> None:
    """Run the schedules and the job queue until stopped.

    Claims each due slot of every configuration's schedules in the catalog
    (a slot runs once, even across restarts and clock jumps; a missed one
    runs once when the daemon is back, or not with --missed skip), runs
    the queued jobs (--jobs at a time, retried with back-off), and checks
    every few minutes for overdue configurations and filling targets, which
    it sends to the notification channels.

    One daemon per catalog: a second one exits 1 at once, naming the pid
    of the first. SIGTERM or SIGINT: a running backup stops at its next
    chunk and its job goes back to the queue; the next start runs it again
    without sending the stored data twice. A second SIGINT exits at once
    (the job is then put back at the next start, as after kill -9).

    /metrics (Prometheus) and /healthz answer on --listen, 127.0.0.1 by
    default; another address needs --allow-remote and a token. The web
    console answers there too (sign in with the password of `strongroom
    console set-password`, or $STRONGROOM_CONSOLE_PASSWORD, which serve sets
    at start; at the first start without one, a random one is printed
    once), unless --no-console.

    A configuration file (strongroom.toml, see `strongroom apply`) is
    applied before the first look at the schedules and again on SIGHUP; a
    file with errors stops the start (exit 2), and on SIGHUP is logged
    while the catalog stays as it was."""
    from strongroom.daemon import Daemon
    from strongroom.schedule.spec import system_zone
    from strongroom.services.backup_manager import create_backup_manager

    import logging

    from strongroom.daemon.logs import log_uncaught_in_threads, register_secret, setup_logging

    # One line per event on stderr (the journal's form when stderr is the
    # journal) and, with --log-file, a rotating file; passwords scrubbed.
    # uvicorn's warnings and a thread's fatal error take the same way.
    setup_logging(stderr=True, file=m.log_file,
                  level="debug" if m.verbose > 1 else "warning" if m.quiet else "info", also=("uvicorn",))
    log_uncaught_in_threads(logging.getLogger("strongroom.daemon"))
    zone = system_zone()
    token, address = None, None
    if not no_listen:
        # Read and refused before anything starts: a bad address or an exposure
        # without a token is a set-up mistake.
        from strongroom.daemon.http import check_exposure, parse_listen, serve_token
        host, port = parse_listen(listen)
        token = serve_token(os.environ, token_file)
        check_exposure(host, allow_remote, token)
        register_secret(token)  # never in a log line
        address = (host, port)
    origin = None
    if console_origin is not None:
        from strongroom.web.guard import public_origin
        origin = public_origin(console_origin)
    # The token is read (or not needed): no child of the daemon inherits it
    # (a source command, pg_dump, systemd-inhibit).
    from strongroom.daemon.http import TOKEN_ENV
    register_secret(os.environ.pop(TOKEN_ENV, None))
    # A console password given to the daemon (a container's way) is set at
    # start, like `console set-password`; nothing the daemon runs inherits it.
    from strongroom.web.auth import PASSWORD_ENV, check_new_password
    console_password = os.environ.pop(PASSWORD_ENV, None)
    register_secret(console_password)
    if console_password is not None and not no_console:
        check_new_password(console_password)
    config_file = _config_file(config_path)
    manager = create_backup_manager(db_path=m.catalog, cache_root=m.cache_dir, max_concurrent_jobs=jobs)
    endpoints = None
    reader = None
    url = None
    try:
        on_reload = None
        if config_file is not None:
            from strongroom.configfile import apply_file
            # Read through once before anything starts: a bad file is a set-up mistake.
            checked = apply_file(manager, config_file, dry_run=True, prune=prune, environ=os.environ)
            if not checked.ok:
                for line in checked.errors:
                    print(f"strongroom: {terminal_safe(line)}", file=sys.stderr)
                sys.exit(checked.exit_code)

            def apply_again() -> None:
                report = apply_file(manager, config_file, prune=prune, environ=os.environ)
                for line in report.lines():
                    if line in report.errors:
                        log.error("%s: %s", config_file, line)
                    elif report.changed:
                        log.info("%s: %s", config_file, line)
                if not report.ok:
                    raise StrongroomError(f"{config_file} not applied; the catalog is as it was before "
                                          f"the errors above" if report.invalid else
                                          f"{config_file} applied only in part: {report.errors[-1]}")

            on_reload = apply_again
        daemon = Daemon(manager, local_zone=zone, tick=tick, wake_grace=wake_grace, on_reload=on_reload)
        if on_reload is not None:
            daemon.request_reload()  # applied in the scheduler thread before its first pass

        def on_signal(number: int, _frame) -> None:
            name = signal.Signals(number).name
            if daemon.stopping and number == signal.SIGINT:
                print("strongroom serve: stopped at once; a running job is put back at the next start",
                      file=sys.stderr, flush=True)
                os._exit(130)
            daemon.stop(name)

        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, on_signal)
        signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
        daemon.start()  # DaemonRunning (exit 1) when another daemon holds the catalog
        try:
            if config_file is not None:
                # The start line counts the schedules the file left, after the first pass applied it.
                deadline = time.monotonic() + 60
                while daemon.heartbeat() is None and not daemon.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
            reader, endpoints, url, schedules = _start_the_rest(m, manager, daemon, zone, tick, token, address,
                                                                allow_remote, not no_console,
                                                                console_password, origin)
        except BaseException:
            # The daemon runs already: its jobs go back to the queue, the catalog is released.
            daemon.stop("serve could not start")
            daemon.join()
            raise
        first_password = getattr(endpoints.console if endpoints else None, "first_password", None)
        if m.json:
            started = {"type": "serve_started", "catalog": manager.catalog.path, "pid": os.getpid(),
                       "schedules": schedules, "jobs": jobs, "url": url,
                       "config_file": str(config_file) if config_file else None}
            if first_password is not None:
                started["console_password"] = first_password
            emit_json(started)
        else:
            served = "the console, /metrics and /healthz" if url and endpoints.console is not None \
                else "/metrics and /healthz"
            where = (f", from {config_file}" if config_file else "") + (f", {served} on {url}" if url else "")
            print(f"strongroom serve: catalog {manager.catalog.path}, pid {os.getpid()}, "
                  f"{plural(schedules, 'schedule')}, {jobs} at a time{where}", flush=True)
            if first_password is not None:
                print(f"strongroom serve: the console password is {first_password} (shown once; change it "
                      f"with `strongroom console set-password`)", flush=True)
        daemon.run_until_stopped()
    finally:
        if endpoints is not None:
            endpoints.stop()
        if reader is not None:
            reader.close()
            reader.catalog.close()
        manager.close()
        manager.catalog.close()
    if m.json:
        emit_json({"type": "serve_stopped", "reason": daemon.stop_reason, "slots_claimed": daemon.claimed,
                   "jobs_put_back": daemon.put_back})
    else:
        back = f"; {plural(daemon.put_back, 'job')} put back to run at the next start" if daemon.put_back else ""
        print(f"strongroom serve: stopped ({daemon.stop_reason}) after {plural(daemon.claimed, 'slot')} "
              f"claimed{back}", flush=True)


def _start_the_rest(m: Manage, manager, daemon, zone, tick: float, token: str | None,
                    address: tuple[str, int] | None, allow_remote: bool, with_console: bool,
                    console_password: str | None = None, origin: str | None = None):
    """What starts once the daemon holds the catalog: the endpoints on `address`
    (None: none), with the console unless not `with_console`. Returns (their
    manager, the endpoints, their URL, the number of schedules)."""
    from strongroom.services.backup_manager import create_backup_manager
    from strongroom.services.schedules import scheduled_tasks

    schedules = len(scheduled_tasks(manager.catalog, zone))
    if address is None:
        return None, None, None, schedules
    # After the catalog lock: a second daemon is refused for the catalog, not for the port.
    from strongroom.daemon.http import HttpEndpoints
    host, port = address
    # A catalog connection of their own: the daemon's is shared by its threads
    # under one lock, which a worker holds while it waits (up to the busy
    # timeout) for another process's write; a read never waits for a writer in
    # WAL mode, so a scrape answers even then.
    reader = create_backup_manager(db_path=manager.catalog.path, cache_root=m.cache_dir, max_concurrent_jobs=1)
    console = None
    if with_console:
        from strongroom.web.console import Console
        console = Console(manager, reader, zone=zone, loopback_only=not allow_remote, origin=origin)
        console.attach()
        if console_password is not None:
            console.password.set(console_password)
        else:
            # Shown once, after the start line (never in the log); only its hash is kept.
            console.first_password = console.password.set_first()
    endpoints = HttpEndpoints(reader, daemon.heartbeat, token, stale_after=max(60.0, 3 * tick), zone=zone,
                              console=console)
    try:
        bound = endpoints.start(host, port, loopback_only=not allow_remote)
    except BaseException:
        reader.close()
        reader.catalog.close()
        raise
    return reader, endpoints, f"http://{f'[{host}]' if ':' in host else host}:{bound}", schedules


COMMANDS = [serve]
