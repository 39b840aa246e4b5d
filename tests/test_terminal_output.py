"""What the command line prints for a person: names from a repository cannot
drive the terminal, and a bug is still one line (and exit_error with --json)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\nfake line\x9b"


def test_names_with_control_characters_are_escaped_in_text(cli, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "plain.txt").write_bytes(b"plain\n")
    cli.run("init", check=True)
    cli.run("backup", str(src), check=True)
    (src / HOSTILE).write_bytes(b"payload\n")
    cli.run("backup", str(src), check=True)
    snaps = json.loads(cli.run("snapshots", "--json", check=True).stdout)
    first, second = snaps[0]["short_id"], snaps[1]["short_id"]
    outputs = {
        "ls": cli.run("ls", "latest", check=True).stdout,
        "ls -l": cli.run("ls", "-l", "latest", check=True).stdout,
        "find": cli.run("find", "evil*", check=True).stdout,
        "find -l": cli.run("find", "--long", "evil*", check=True).stdout,
        "diff": cli.run("diff", first, second, check=True).stdout,
    }
    for what, out in outputs.items():
        text = out.decode("utf-8", "surrogateescape")
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, what
        assert "fake line" in text and "\\x1b[2J" in text and "\\x0afake line" in text, what
        assert not any(line.startswith("fake line") for line in text.splitlines()), what
    # JSON keeps the name exactly: a program reads it, not a terminal.
    found = json.loads(cli.run("find", "--json", "evil*", check=True).stdout)
    assert [m["path"] for group in found for m in group["matches"]] == [f"{src}/{HOSTILE}"]


def test_an_internal_error_is_one_line_and_exit_error(tmp_path):
    """A bug (an exception that is not strongroom's) through the real entry point:
    one line, exit 1, no traceback unless --debug, and exit_error with --json."""
    script = textwrap.dedent("""
        import sys, click
        from strongroom.cli import main as front

        @click.command("boom")
        @click.option("--json", is_flag=True)
        @click.option("--debug", is_flag=True)
        def boom(json, debug):
            raise RuntimeError("the bug")

        front.cli.add_command(boom)
        front.main(sys.argv[1:])
    """)
    run = lambda *args: subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=60)
    done = run("boom", "--json")
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strongroom: internal error: RuntimeError: the bug")
    error = json.loads(done.stdout.decode().splitlines()[-1])
    assert error["message_type"] == "exit_error" and error["code"] == 1 and "the bug" in error["message"]
    debug = run("boom", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr.decode()
