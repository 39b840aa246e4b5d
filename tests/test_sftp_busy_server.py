"""An OpenSSH server that turns new connections away (MaxStartups): what a
fleet's hosts meet when they start together against a default sshd (at
most 10 connections that have not logged in yet, then 30 % of new ones
dropped, all past 100). sshd writes "Exceeded MaxStartups" and closes: that
is trouble that passes, waited for and retried, never "does not speak SSH".
"""

from __future__ import annotations

import socket

from fleet import REMOTE_ENV, Fleet, FleetTarget, summary_of
from sftp_server import run_sshd


def test_a_server_turning_connections_away_is_waited_for_not_taken_for_another_service(tmp_path):
    # One connection that has not logged in fills the server: every other is dropped.
    with run_sshd(max_startups="1:100:1") as server:
        fleet = Fleet(FleetTarget("sftp", server.url(server.scratch()), {
            **REMOTE_ENV, "STRONGROOM_SFTP_KEY_FILE": str(server.client_key),
            "STRONGROOM_SFTP_KNOWN_HOSTS": str(server.known_hosts), "SSH_AUTH_SOCK": ""}), tmp_path)
        host = fleet.host("host1")
        fleet.init()
        with socket.create_connection((server.host, server.port)) as pending:
            assert pending.recv(64).startswith(b"SSH-2.0-")  # accepted: it counts
            run = host.start("snapshots", "--json").go()
            # While that connection stays, every other is turned away: the
            # command says once what it waits for (or, taking sshd for another
            # service, gives up). sshd's close after its line sometimes reaches
            # us as a reset (our greeting unread): also trouble that passes.
            said = run.proc.stderr.readline().decode()
            assert "waiting for sftp host" in said and ("the server is busy" in said or "reset" in said), said
        done = run.finish()
        assert summary_of(done) == []  # it went in once the slot was free: no snapshots yet
        assert "does not speak SSH" not in done.stderr.decode() and any("past MaxStartups" in line for line in server.log)
