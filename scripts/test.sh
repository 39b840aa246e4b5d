#!/usr/bin/env bash
# Install everything the tests need and run the whole suite.
set -euo pipefail
. "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"

# The tests start their own servers on random ports, so packages must not
# start system daemons: a policy-rc.d that refuses every start keeps their
# init scripts quiet while apt-get installs (the second of apache2 and nginx
# would fail to bind port 80, and its postinst with it).
missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}
install_without_starting() {
    local policy=/usr/sbin/policy-rc.d made_policy="" status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    apt-get update -qq || status=$?
    if [ "$status" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
    fi
    [ -n "$made_policy" ] && rm -f "$policy"
    return "$status"
}

# The WebDAV conformance tests run real servers (rclone, Apache mod_dav, nginx
# with dav_ext) on loopback; install the Debian packages when we can.
install_webdav_servers() {
    local missing
    mapfile -t missing < <(missing_packages rclone apache2 apache2-utils nginx-extras libnginx-mod-http-dav-ext)
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing test servers: ${missing[*]}" >&2
    local status=0
    install_without_starting "${missing[@]}" || status=$?
    # Whatever a postinst may still have started, stop it.
    service apache2 stop >/dev/null 2>&1 || true
    service nginx stop >/dev/null 2>&1 || true
    local pidfile
    for pidfile in /run/apache2/apache2.pid /var/run/apache2/apache2.pid /run/nginx.pid; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" >/dev/null 2>&1 || true
    done
    return "$status"
}
# tests/test_mount.py mounts real FUSE file systems: libfuse 3 (loaded by the
# mfusepy binding) and fusermount3 come with Debian's fuse3.
install_fuse() {
    [ -z "$(missing_packages fuse3)" ] && return 0
    echo "installing fuse3" >&2
    install_without_starting fuse3
}
# tests/test_db_sources.py makes its own PostgreSQL clusters (initdb, pg_ctl on
# a socket directory) and dumps them with pg_dump: Debian's postgresql. Its
# postinst must not start (or leave running) the system cluster on 5432.
install_postgresql() {
    [ -z "$(missing_packages postgresql)" ] && return 0
    echo "installing postgresql" >&2
    local status=0
    install_without_starting postgresql || status=$?
    command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r version name _; do
        pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
    done
    return "$status"
}
# tests/test_systemd_units.py verifies the shipped units with systemd-analyze
# and runs the real systemd-inhibit: Debian's systemd (installed, not booted).
install_systemd() {
    [ -z "$(missing_packages systemd)" ] && return 0
    echo "installing systemd" >&2
    install_without_starting systemd
}
# The console's browser tests (tests/browser.py) drive Debian's chromium
# through Playwright with executable_path: Playwright's own browser download
# (`playwright install`) never runs.
install_chromium() {
    [ -z "$(missing_packages chromium)" ] && return 0
    echo "installing chromium" >&2
    install_without_starting chromium
}
# The SFTP tests (tests/sftp_server.py) start Debian's sshd on a free port with
# their own config and throw-away keys; the system's sshd is never started.
# sshd started as root needs its privilege-separation directory, which only
# the package's own service start would make.
install_sshd() {
    local status=0
    if [ -n "$(missing_packages openssh-server openssh-client)" ]; then
        echo "installing openssh-server openssh-client" >&2
        install_without_starting openssh-server openssh-client || status=$?
        service ssh stop >/dev/null 2>&1 || true
    fi
    mkdir -p /run/sshd && chmod 755 /run/sshd
    return "$status"
}

# tests/s3_server.py runs a throw-away Ceph cluster (one monitor, one memstore
# OSD, radosgw) in a temporary directory: Debian's ceph packages, whose
# units must not start a system cluster.
install_ceph() {
    local missing
    mapfile -t missing < <(missing_packages ceph-mon ceph-osd radosgw ceph-common)
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing ceph: ${missing[*]}" >&2
    install_without_starting "${missing[@]}"
}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    install_webdav_servers || echo "warning: could not install the WebDAV test servers" >&2
    install_fuse || echo "warning: could not install fuse3" >&2
    install_postgresql || echo "warning: could not install postgresql" >&2
    install_systemd || echo "warning: could not install systemd" >&2
    install_chromium || echo "warning: could not install chromium" >&2
    install_sshd || echo "warning: could not install openssh-server" >&2
    install_ceph || echo "warning: could not install ceph" >&2
fi

# The browser tests' screenshots: only the latest run's are kept.
export STRONGROOM_TEST_ARTIFACTS="${STRONGROOM_TEST_ARTIFACTS:-$ROOT/test-artifacts/console}"
rm -rf "$STRONGROOM_TEST_ARTIFACTS"
mkdir -p "$STRONGROOM_TEST_ARTIFACTS"

# Two workers, a test file each at a time (its servers and fixtures stay in
# one process): most tests wait on child processes and servers, so two cores
# take the suite in about 15 minutes (14 min 58 s on a fresh clone; the budget is 20). Tests fork their
# strongroom commands from a process that has imported it (tests/forked_cli.py).
# The tests start thousands of strongroom processes: with
# PYTHONDONTWRITEBYTECODE set (some images set it), each would compile every
# module it imports again. Compile once, and let the children use it.
unset PYTHONDONTWRITEBYTECODE
"$ROOT/.venv/bin/python" -m compileall -q -j 2 "$ROOT/src" "$ROOT/tests" >/dev/null || true
status=0
"$ROOT/.venv/bin/python" -m pytest -q -n 2 --dist loadfile --durations=15 "$@" || status=$?
shots=$(find "$STRONGROOM_TEST_ARTIFACTS" -name '*.png' | wc -l)
echo "console screenshots ($shots): $STRONGROOM_TEST_ARTIFACTS"
exit "$status"
