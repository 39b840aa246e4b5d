#!/usr/bin/env bash
# Install everything the tests need and run the whole suite.
set -euo pipefail
. "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"

# The WebDAV conformance tests run real servers (rclone, Apache mod_dav, nginx
# with dav_ext) on loopback; install the Debian packages when we can.
install_webdav_servers() {
    local wanted=(rclone apache2 apache2-utils nginx-extras libnginx-mod-http-dav-ext)
    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing test servers: ${missing[*]}" >&2
    # The tests start their own servers on random ports: keep the packages'
    # init scripts from starting system daemons on port 80 (the second of
    # apache2 and nginx would fail to bind, and its postinst with it).
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local status=0
    apt-get update -qq || status=$?
    if [ "$status" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >/dev/null || status=$?
    fi
    [ -n "$made_policy" ] && rm -f "$policy"
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
    dpkg-query -W -f='${Status}' fuse3 2>/dev/null | grep -q "install ok installed" && return 0
    echo "installing fuse3" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null
}
# tests/test_db_sources.py makes its own PostgreSQL clusters (initdb, pg_ctl on
# a socket directory) and dumps them with pg_dump: Debian's postgresql. Its
# postinst must not start (or leave running) the system cluster on 5432.
install_postgresql() {
    dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed" && return 0
    echo "installing postgresql" >&2
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local status=0
    apt-get update -qq || status=$?
    if [ "$status" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
            >/dev/null || status=$?
    fi
    [ -n "$made_policy" ] && rm -f "$policy"
    command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r version name _; do
        pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
    done
    return "$status"
}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    install_webdav_servers || echo "warning: could not install the WebDAV test servers" >&2
    install_fuse || echo "warning: could not install fuse3" >&2
    install_postgresql || echo "warning: could not install postgresql" >&2
fi

# Two workers, a test file each at a time (its servers and fixtures stay in
# one process): most tests wait on child processes and servers, so two cores
# take the suite in about 15 minutes (14 min 56 s measured on a fresh clone).
exec "$ROOT/.venv/bin/python" -m pytest -q -n 2 --dist loadfile "$@"
