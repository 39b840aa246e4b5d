"""Configuration as a file against the mistakes and odd files people make:
what `apply` must refuse so that nothing the user meant to keep is lost,
and files it must not hang on. The real CLI in subprocesses, local
repositories on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_configfile import Strongroom, configs_in, manager, write  # noqa: F401 (manager: a fixture)

from strongroom.configfile import apply_file


@pytest.fixture
def sr(tmp_path) -> Strongroom:
    return Strongroom(tmp_path)


@pytest.fixture
def sources(tmp_path) -> Path:
    for name in ("home", "db"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(f"the {name} data\n")
    return tmp_path


def test_prune_keeps_a_configuration_whose_generated_key_has_no_recovery_kit(sr, sources):
    # Declared without a password reference: its key is generated and kept in the secrets store.
    first = write(sources / "first.toml", '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n')
    assert sr.out("apply", str(first)).splitlines() == ["+ config home"]
    sr.out("run", "home")
    # The section renamed (or moved to another file): --prune must not throw the only key away.
    renamed = write(sources / "renamed.toml", '[config.house]\nsource = ["home"]\ntarget_dir = "repos/house"\n')
    refused = sr.run("apply", str(renamed), "--prune")
    assert refused.returncode == 2
    assert refused.stderr.decode().splitlines() == [
        f"strongroom: {renamed}: config.home: not in the file, but --prune does not forget it: its repository "
        "key is kept only in this machine's secrets store and no recovery kit of it is on record. Run "
        "`strongroom key export home` and keep the kit, then apply again (or `strongroom config remove home "
        "--without-kit`)"]
    assert configs_in(sr) == ["home"]
    assert "1 snapshot" in sr.out("snapshots", "--config", "home")  # still opens
    # With the kit on record, the prune goes ahead; the kit opens the repository still.
    kit = sr.out("key", "export", "home")
    assert "home" in kit
    assert sr.out("apply", str(renamed), "--prune").splitlines() == ["+ config house", "- config home"]
    assert configs_in(sr) == ["house"]


def test_prune_forgets_a_configuration_whose_password_is_referenced(sr, sources):
    (sources / "pass").write_text("a referenced repository password\n")
    first = write(sources / "first.toml", '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n'
                                          'password_file = "pass"\n')
    sr.out("apply", str(first))
    other = write(sources / "other.toml", '[config.db]\nsource = ["db"]\ntarget_dir = "repos/db"\n'
                                          'password_file = "pass"\n')
    assert sr.out("apply", str(other), "--prune").splitlines() == ["+ config db", "- config home"]
    assert configs_in(sr) == ["db"]


def test_a_fifo_or_a_device_is_refused_rather_than_waited_on(sr, sources):
    # A FIFO no one writes to would block the open for ever: serve's reload with it.
    fifo = sources / "strongroom.toml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        done = sr.run("apply", str(path))
        assert done.returncode == 2
        assert done.stderr.decode().splitlines() == [f"strongroom: {path}: not a regular file; not a "
                                                     "configuration file"]
    # serve names what is wrong with it before it starts.
    served = sr.run("serve", "--config", str(fifo), "--no-listen")
    assert served.returncode == 2 and served.stderr.decode().splitlines() == [
        f"strongroom: configuration file {fifo} is not a regular file"]
    os.mkfifo(sources / "dav-pass")
    client = write(sources / "client.toml", '[client.nas]\nurl = "http://127.0.0.1:9/dav/"\nuser = "me"\n'
                                            'password_file = "dav-pass"\n')
    done = sr.run("apply", str(client))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"strongroom: {client}:4: client.nas.password_file: cannot read {sources / 'dav-pass'}: not a regular file"]
    assert configs_in(sr) == []


def test_a_file_that_changes_while_it_is_read_writes_nothing(sr, sources):
    """An editor saving in place: apply reads the first part, the rest lands
    while apply runs the file's password commands. With --prune, what the
    first part lacks would be removed."""
    (sources / "pass").write_text("a referenced repository password\n")
    kept = ('[config.db]\nsource = ["db"]\ntarget_dir = "repos/db"\npassword_file = "pass"\n')
    sr.out("apply", str(write(sources / "db.toml", kept)))
    rest = sources / "rest.toml"
    rest.write_text(kept)
    path = sources / "strongroom.toml"
    # The client's password command finishes the file's writing (then prints the password).
    path.write_text(f'[client.nas]\nurl = "http://127.0.0.1:9/dav/"\nuser = "me"\n'
                    f'password_command = "cat {rest} >> {path}; echo dav-pass"\n\n'
                    '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\npassword_file = "pass"\n')
    done = sr.run("apply", str(path), "--prune")
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [(f"strongroom: {path}: changed while it was being read; "
                                                     "nothing was written: apply it again once it is saved")]
    assert configs_in(sr) == ["db"]


def test_a_password_command_that_prints_without_end_is_stopped_at_the_bound(sr, sources):
    from strongroom.errors import UsageError
    from strongroom.services.password_command import MAX_OUTPUT, run_password_command
    # 8 KiB at a time, without end: stopped once past the bound, long before the timeout.
    chunk = "x" * 8191
    with pytest.raises(UsageError) as refused:
        run_password_command(f"while :; do echo {chunk}; sleep 0.05; done", "config db: the password command",
                             timeout=30)
    assert str(refused.value) == f"config db: the password command printed more than {MAX_OUTPUT // 1024} KiB: " \
                                 "not a password"
    # `yes` through the CLI: one error line, nothing added.
    path = write(sources / "client.toml", '[client.nas]\nurl = "http://127.0.0.1:9/dav/"\nuser = "me"\n'
                                          'password_command = "yes"\n')
    done = sr.run("apply", str(path))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"strongroom: {path}:4: client.nas.password_command: client nas: the password command printed more than "
        "64 KiB: not a password"]


def test_a_password_command_whose_child_keeps_the_output_open_still_times_out():
    from strongroom.errors import UsageError
    from strongroom.services.password_command import run_password_command
    with pytest.raises(UsageError) as refused:
        run_password_command("echo pw; sleep 30 &", "config db: the password command", timeout=1)
    assert str(refused.value) == "config db: the password command did not finish within 1s"


CONFIG = '[config.a]\nsource = ["home"]\ntarget_dir = "repos/a"\n'


@pytest.mark.parametrize("body, key, message", [
    # Values of the wrong type for a schedule's rules: one line each, not an internal error.
    ('schedule = "every 1d"\nrandom_delay = 5\n', "random_delay", "give text"),
    ('schedule = "every 1d"\nwindow = 5\n', "window", "give text"),
    ('schedule = "every 1d"\nmissed = true\n', "missed", "give text"),
    ('schedule = "every 1d"\npriority = "1"\n', "priority", "give a whole number"),
    # Said of the file's key, not of a spec the file does not hold.
    ('schedule = "every 1d"\npriority = 100000\n', "priority",
     "the priority is a whole number from -1000 to 1000"),
    # A blank reference would read as none, and a key be generated in its place.
    ('password_file = ""\n', "password_file",
     "blank: name a file, a variable or a command (leave the key out to keep a key in the secrets store)"),
    ('password_command = "  "\n', "password_command",
     "blank: name a file, a variable or a command (leave the key out to keep a key in the secrets store)"),
    # As `config add` refuses them.
    ('password_file = "pass"\npassword_env = "REPO_PASS"\n', "password_env",
     "give one of password_file, password_env"),
    ('encrypt = false\npassword_file = "pass"\n', "password_file",
     "a configuration without encryption takes no password"),
    # One line, not one for each type the field may hold.
    ('compression = 5\n', "compression", "give a codec as text: zstd, zstd:LEVEL, lz4, gzip or none"),
])
def test_a_value_the_command_line_refuses_is_one_line_at_its_key(manager, sources, body, key, message):
    path = write(sources / "strongroom.toml", CONFIG + body)
    report = apply_file(manager, path, environ={"REPO_PASS": "x"})
    line = 3 + body[:body.index(key)].count("\n") + 1
    assert report.errors == [f"{path}:{line}: config.a.{key}: {message}"]
    assert report.exit_code == 2 and manager.list_configs() == []


@pytest.mark.parametrize("body, where, message", [
    ('[client.nas]\nurl = "http://[::1/dav/"\nuser = "me"\npassword_env = "DAV_PASS"\n', "2: client.nas.url",
     "WebDAV URL 'http://[::1/dav/': invalid IPv6 address; use https://HOST/PATH (or http:// on a LAN)"),
    ('[notify.ops]\nwebhook = "https://[::1/hook"\n', "1: notify.ops", "the webhook URL has a bad host"),
    ('[notify.ops]\nheartbeat = "https://hc.example:99999/ping"\n', "1: notify.ops",
     "the heartbeat URL has a bad port"),
    ('[notify.ops]\nemail = "ops@example.org"\nsmtp = "smtp://[::1"\n', "1: notify.ops",
     "an SMTP server is smtp://HOST:PORT or smtps://HOST:PORT"),
])
def test_a_url_that_cannot_be_split_is_one_line_not_an_internal_error(sr, sources, body, where, message):
    path = write(sources / "strongroom.toml", body)
    done = sr.run("apply", str(path), env={"DAV_PASS": "x"})
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [f"strongroom: {path}:{where}: {message}"]


def test_notify_add_refuses_a_url_that_cannot_be_split_in_one_line(sr):
    done = sr.run("notify", "add", "ops", "--webhook", "https://[::1/hook")
    assert done.returncode != 0 and done.stderr.decode().splitlines() == [
        "strongroom: the webhook URL has a bad host"]


def test_dropping_the_password_reference_of_a_configuration_is_refused_before_anything_is_written(sr, sources):
    (sources / "pass").write_text("a referenced repository password\n")
    first = write(sources / "strongroom.toml", '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n'
                                               'password_file = "pass"\n')
    sr.out("apply", str(first))
    sr.out("run", "home")
    # The reference left out (and a new configuration beside it): no key is stored for it to fall back on.
    dropped = write(sources / "strongroom.toml", '[config.db]\nsource = ["db"]\ntarget_dir = "repos/db"\n'
                                                 'password_file = "pass"\n\n'
                                                 '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n')
    done = sr.run("apply", str(dropped))
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"strongroom: {dropped}:6: config.home: give its repository password as password_file (as now) or another "
        "reference: its repository opens with that password, and no key is kept in the secrets store for it "
        "(`strongroom config edit home --store-password` keeps one)"]
    assert configs_in(sr) == ["home"]
    # Kept in the secrets store first, the file without a reference matches it.
    sr.out("config", "edit", "home", "--store-password", env={"STRONGROOM_PASSWORD_FILE": str(sources / "pass")})
    assert sr.out("apply", str(dropped)).splitlines() == ["+ config db"]
    assert "1 snapshot" in sr.out("snapshots", "--config", "home")


def test_prune_keeps_a_generated_key_whose_repository_does_not_open(sr, sources):
    import shutil
    first = write(sources / "first.toml", '[config.home]\nsource = ["home"]\ntarget_dir = "repos/home"\n')
    sr.out("apply", str(first))
    shutil.rmtree(sources / "repos" / "home")  # unmounted, say: that tells nothing of a kit
    other = write(sources / "other.toml", '[config.db]\nsource = ["db"]\ntarget_dir = "repos/db"\n')
    refused = sr.run("apply", str(other), "--prune")
    assert refused.returncode == 2
    assert "its repository did not open to tell whether a recovery kit of it is on record (no repository at " \
           in refused.stderr.decode()
    assert configs_in(sr) == ["home"]


def test_a_quoted_key_with_unicode_escapes_has_its_own_line():
    import tomllib

    from strongroom.configfile.lines import KeyLines
    text = ('[config."\\u0061"]\nsource = ["home"]\n"\\u00e9t\\u00e9" = 1\n'
            '[config."\\U0001F600\\r"]\n"tab\\tkey" = 2\n')
    doc = tomllib.loads(text)  # the keys as tomllib reads them
    assert set(doc["config"]) == {"a", "\U0001F600\r"}
    lines = KeyLines(text)
    assert lines.line_of(("config", "a")) == 1
    assert lines.line_of(("config", "a", "été")) == 3
    assert lines.line_of(("config", "\U0001F600\r")) == 4
    assert lines.line_of(("config", "\U0001F600\r", "tab\tkey")) == 5


@pytest.mark.parametrize("url", ["me:SECRET-PW-41@dav.example/x", "https:me:SECRET-PW-41@dav.example/x"])
def test_a_password_in_a_url_without_slashes_is_refused_unshown(sr, sources, url):
    path = write(sources / "strongroom.toml", f'[client.nas]\nurl = "{url}"\nuser = "me"\n'
                                              'password_env = "DAV_PASS"\n')
    done = sr.run("apply", str(path), env={"DAV_PASS": "x"})
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"strongroom: {path}:2: client.nas.url: never put the WebDAV password in the URL: give password_file, "
        "password_env or password_command"]
    added = sr.run("client", "add", "nas", "--url", url, "--user", "me", env={"STRONGROOM_WEBDAV_PASSWORD": "x"})
    assert added.returncode == 2 and b"never put the WebDAV password in the URL" in added.stderr
    assert b"SECRET-PW-41" not in done.stderr + done.stdout + added.stderr + added.stdout


def test_a_url_without_slashes_has_its_password_masked():
    from strongroom.services.urls import has_password, redact_password, without_password
    assert has_password("me:pw@dav.example/x") and redact_password("me:pw@dav.example/x") == "me:***@dav.example/x"
    assert without_password("me:pw@dav.example/x") == "me@dav.example/x"
    assert not has_password("https://dav.example/a@b:c") and not has_password("https://me@dav.example/")


def test_an_unknown_key_of_a_hook_is_shown_at_its_own_line(manager, sources):
    path = write(sources / "strongroom.toml", CONFIG + '''
        [dr.nightly]
        target_base = "restored"

        [[dr.nightly.steps]]
        config = "a"

        [[dr.nightly.steps]]
        config = "a"

        [[dr.nightly.steps.before]]
        command = "true"
        mode = "optional"
        timeout_s = 5
        '''.replace("\\n        ", "\\n"))
    report = apply_file(manager, path, environ={})
    assert report.errors == [f"{path}:17: dr.nightly.steps[1].before[0].timeout_s: unknown key 'timeout_s' in a hook"]


def test_a_secret_that_is_not_utf8_is_refused_when_the_file_is_read(sr, sources):
    # Kept, it failed at every use of the client (an internal error of `client test`).
    path = write(sources / "strongroom.toml", '[client.nas]\nurl = "http://127.0.0.1:9/dav/"\nuser = "me"\n'
                                              "password_command = \"printf '\\\\377\\\\376pw\\\\n'\"\n")
    done = sr.run("apply", str(path))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"strongroom: {path}:4: client.nas.password_command: the password is not UTF-8 text"]
    assert "nas" not in sr.out("client", "list")  # not added


@pytest.mark.parametrize("option", ["--password-file", "--password-env", "--password-command"])
def test_config_add_refuses_a_blank_password_reference_rather_than_generating_a_key(sr, sources, option):
    done = sr.run("config", "add", "home", "--source", str(sources / "home"), "--target-dir",
                  str(sources / "repos" / "home"), option, " " if option != "--password-file" else "")
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [f"strongroom: {option} is blank: name a file, a variable or a "
                                                 "command"]
    assert configs_in(sr) == [] and not (sources / "repos").exists()


def test_config_remove_keeps_a_generated_key_without_a_kit_unless_told(sr, sources):
    sr.out("config", "add", "home", "--source", str(sources / "home"), "--target-dir", str(sources / "repos" / "home"))
    refused = sr.run("config", "remove", "home")
    assert refused.returncode == 2 and refused.stderr.decode().splitlines() == [
        "strongroom: config home: its repository key is kept only in this machine's secrets store and no recovery "
        "kit of it is on record: nothing would find that key again. Run `strongroom key export home` and keep the "
        "kit first (or give --without-kit)"]
    assert configs_in(sr) == ["home"]
    sr.out("key", "export", "home")
    assert "removed configuration home" in sr.out("config", "remove", "home")
    sr.out("config", "add", "db", "--source", str(sources / "db"), "--target-dir", str(sources / "repos" / "db"))
    assert "removed configuration db" in sr.out("config", "remove", "db", "--without-kit")
    assert configs_in(sr) == []
