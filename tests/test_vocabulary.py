"""One vocabulary: managed configurations addressed by `--config NAME` on
the repository commands (backup, snapshots, restore, check, forget, stats),
the old names (run, points, recover, validate, apply-retention, usage) still
working with one notice, and the mixtures that make no sense refused with
exit 2 and one line. The real CLI in subprocesses, a real catalog and real
repositories in temporary directories."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from treeutil import snapshot_tree
import forked_cli

# Variables of the surrounding shell that would change what is tested.
_SCRUBBED = ("STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND", "STRONGROOM_REPO",
             "STRONGROOM_CATALOG")


class Managed:
    """The real `strongroom`, with its catalog, secrets and cache below `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env.update(STRONGROOM_CATALOG=str(root / "state" / "catalog.db"),
                        STRONGROOM_SECRETS=str(root / "state" / "secrets.json"), STRONGROOM_SECRETS_BACKEND="file",
                        STRONGROOM_CACHE_DIR=str(root / "cache"))

    def run(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        done = forked_cli.run([*args],
                              env={**self.env, **(env or {})}, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"strongroom {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def lines(self, *args: str) -> list[dict]:
        done = self.run(*args, "--json", check=True)
        return [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]

    def summary(self, *args: str) -> dict:
        return [e for e in self.lines(*args) if e.get("type") == "summary"][-1]

    def snapshots(self, name: str, *args: str) -> list[dict]:
        done = self.run("snapshots", "--config", name, *args, "--json", check=True)
        return json.loads(done.stdout)


def stderr_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if line.strip()]


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def make_tree(root: Path, text: bytes) -> Path:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_bytes(text)
    (root / "sub" / "b.bin").write_bytes(os.urandom(64 * 1024))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Configuration `docs` with two snapshots (a full one, then an incremental one
    after a change), and the trees each of them holds."""
    root = tmp_path_factory.mktemp("vocabulary")
    m = Managed(root)
    src = make_tree(root / "src", b"first\n")
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(root / "repo"), check=True)
    first = m.summary("backup", "--config", "docs", "--full")
    before = snapshot_tree(src)
    (src / "a.txt").write_bytes(b"second\n" * 100)
    (src / "new.txt").write_bytes(b"new\n")
    # STRONGROOM_REPO set in the shell does not stand against --config: only -r on the command line does.
    done = m.run("backup", "--config", "docs", env={"STRONGROOM_REPO": str(root / "elsewhere")}, check=True)
    last = done.stdout.decode().splitlines()[-1]
    assert last.startswith("snapshot ") and last.endswith("(incremental)"), last
    second = last.split()[1]
    return {"m": m, "root": root, "src": src, "first": first, "second": second, "before": before,
            "after": snapshot_tree(src)}


# ---- the new forms ---------------------------------------------------------------------------


def test_backup_with_config_goes_through_the_job_queue(world):
    m, first, second = world["m"], world["first"], world["second"]
    assert first["status"] == "succeeded" and first["kind"] == "full" and first["files_new"] == 2
    jobs = [e for e in m.lines("jobs", "docs") if e["type"] == "job"]
    assert [(j["kind"], j["status"], j["snapshot_id"]) for j in jobs] == [
        ("incremental", "succeeded", second), ("full", "succeeded", first["snapshot"])]
    assert not (world["root"] / "elsewhere").exists()


def test_snapshots_with_config_is_one_array_with_restic_names(world):
    m, src = world["m"], world["src"]
    found = m.snapshots("docs")
    assert [s["id"] for s in found] == [world["first"]["snapshot"], world["second"]]
    for s in found:
        assert s["short_id"] == s["id"][:8]
        assert datetime.fromisoformat(s["time"]).tzinfo is not None  # RFC 3339: the offset is there
        assert s["paths"] == [str(src)] and s["hostname"] and s["tags"] == [] and s["config"] == "docs"
    assert [s["kind"] for s in found] == ["full", "incremental"] and found[1]["total_files"] == 3
    assert m.snapshots("docs", "--since", found[1]["time"]) == found[1:]
    assert m.snapshots("docs", "--until", found[0]["time"]) == found[:1]
    assert json.loads(m.run("snapshots", "--configs", "--json", check=True).stdout) == found
    table = m.run("snapshots", "--config", "docs", check=True).stdout.decode()
    assert found[0]["short_id"] in table and table.splitlines()[-1] == "2 snapshots"


def test_backup_dry_run_with_config_is_the_estimate(world, tmp_path):
    m, src = world["m"], world["src"]
    (src / "more.txt").write_bytes(b"more\n" * 1000)
    try:
        dry = m.summary("backup", "--config", "docs", "--dry-run")
        estimated = m.summary("estimate", "docs")
    finally:
        (src / "more.txt").unlink()
    assert dry["files_new"] == estimated["files_new"] == 1
    assert dry["bytes_to_read"] == estimated["bytes_to_read"] and dry["new_bytes"] == estimated["new_bytes"]
    assert len(m.snapshots("docs")) == 2 and len([e for e in m.lines("jobs", "docs") if e["type"] == "job"]) == 2


def test_restore_with_config(world, tmp_path):
    m, src = world["m"], world["src"]
    m.run("restore", "--config", "docs", "--target", str(tmp_path / "latest"), check=True)
    assert snapshot_tree(restored(tmp_path / "latest", src)) == world["after"]
    m.run("restore", "--config", "docs", "latest", "--target", str(tmp_path / "named"), check=True)
    assert snapshot_tree(restored(tmp_path / "named", src)) == world["after"]
    first = world["first"]["snapshot"]
    events = m.lines("restore", "--config", "docs", first[:10], "--target", str(tmp_path / "byid"), "--no-verify")
    assert snapshot_tree(restored(tmp_path / "byid", src)) == world["before"]
    [plan] = [e for e in events if e["type"] == "plan"]
    assert plan["point_id"] == first and plan["verify"] is False
    when = m.snapshots("docs")[0]["time"]
    m.run("restore", "--config", "docs", "--at", when, "--target", str(tmp_path / "then"),
          "--include", "*.txt", check=True)
    then = restored(tmp_path / "then", src)
    assert (then / "a.txt").read_bytes() == b"first\n" and not (then / "sub" / "b.bin").exists()


def test_check_with_config(world):
    m = world["m"]
    quick = m.summary("check", "--config", "docs")
    assert quick["ok"] and quick["backup_id"] == world["second"] and not quick["deep"]
    deep = m.summary("check", "--config", "docs", "--read-data", "--snapshot", world["first"]["snapshot"][:8])
    assert deep["ok"] and deep["deep"] and deep["backup_id"] == world["first"]["snapshot"] and deep["packs_read"] > 0
    text = m.run("check", "--config", "docs", check=True).stdout.decode()
    assert f"snapshot {world['second'][:8]} of docs" in text and "no problems were found" in text


def test_stats_with_config_and_configs(world):
    m = world["m"]
    one = m.summary("stats", "--config", "docs")
    assert one["config_name"] == "docs" and one["snapshots"] == 2 and one["repository_size"] > 0
    every = m.summary("stats", "--configs")
    assert every["configs"]["docs"]["snapshots"] == 2 and every["total"]["snapshots"] == 2
    table = m.run("stats", "--config", "docs", check=True).stdout.decode()
    assert table.splitlines()[1].split()[:2] == ["docs", "2"] and "total" not in table
    trend = m.lines("stats", "--config", "docs", "--trend", "--days", "30")
    assert [e["config_name"] for e in trend if e["type"] == "config"] == ["docs"]
    assert m.summary("stats", "--configs", "--trend")["days"] == 90


def test_forget_with_config_applies_its_policy(world):
    m, root = world["m"], world["root"]
    src = make_tree(root / "trim-src", b"trim\n")
    m.run("config", "add", "trim", "--source", str(src), "--target-dir", str(root / "trim-repo"), "--keep-last", "1",
          check=True)
    m.run("backup", "--config", "trim", check=True)
    (src / "a.txt").write_bytes(b"changed\n")
    m.run("backup", "--config", "trim", check=True)
    older, newer = [s["id"] for s in m.snapshots("trim")]

    listed = m.run("forget", "--config", "trim", "--dry-run", check=True).stdout.decode()
    assert f"remove {older[:8]}" in listed and f"keep   {newer[:8]}" in listed
    assert len(m.snapshots("trim")) == 2
    done = m.summary("forget", "--config", "trim", "--prune")
    assert done["removed"] == [older] and done["kept"] == 1 and done["prune"]["bytes_freed"] > 0
    assert [s["id"] for s in m.snapshots("trim")] == [newer]


# ---- the old names -----------------------------------------------------------------------------

NOTICE = 'strongroom: "{old}" is now "{new}"; the old name will be removed in 0.3'


def assert_one_notice(done: subprocess.CompletedProcess, old: str, new: str) -> None:
    lines = stderr_lines(done)
    assert lines.count(NOTICE.format(old=old, new=new)) == 1, lines
    assert sum('is now "' in line for line in lines) == 1, lines


def test_the_old_names_work_as_before_with_one_notice(world, tmp_path):
    m, src = world["m"], world["src"]
    points = m.run("points", "docs", "--json", check=True)
    assert_one_notice(points, "points", "snapshots --config NAME")
    docs = [json.loads(line) for line in points.stdout.decode().splitlines()]
    assert [d["type"] for d in docs] == ["point", "point", "summary"] and docs[-1]["count"] == 2
    assert [d["id"] for d in docs[:2]] == [s["id"] for s in m.snapshots("docs")]
    assert_one_notice(m.run("points", check=True), "points", "snapshots --configs")

    recover = m.run("recover", "docs", "--target", str(tmp_path / "back"), "--point", world["first"]["snapshot"],
                    check=True)
    assert_one_notice(recover, "recover", "restore --config NAME")
    assert snapshot_tree(restored(tmp_path / "back", src)) == world["before"]

    validate = m.run("validate", "docs", "--deep", "--json", check=True)
    assert_one_notice(validate, "validate", "check --config NAME")
    report = json.loads(validate.stdout.decode().splitlines()[-1])
    assert report["ok"] and report["deep"] and report["backup_id"] == world["second"]

    usage = m.run("usage", "--json", check=True)
    assert_one_notice(usage, "usage", "stats --configs")
    assert json.loads(usage.stdout)["configs"]["docs"]["snapshots"] == 2
    trend = m.run("usage", "--trend", "--config", "docs", check=True)
    assert_one_notice(trend, "usage", "stats --config NAME")
    refused = m.run("usage", "--config", "docs")
    assert refused.returncode == 2 and stderr_lines(refused)[-1] == "strongroom: --config goes with --trend"

    retention = m.run("apply-retention", "docs", "--dry-run")
    assert retention.returncode == 2 and "has no retention policy" in stderr_lines(retention)[-1]
    assert_one_notice(retention, "apply-retention", "forget --config NAME")

    before = len(m.snapshots("docs"))
    done = m.run("run", "docs", "--json", check=True)
    assert_one_notice(done, "run", "backup --config NAME")
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    assert summary["type"] == "summary" and summary["status"] == "succeeded" and summary["config"] == "docs"
    assert [s["id"] for s in m.snapshots("docs")][-1] == summary["snapshot"] and len(m.snapshots("docs")) == before + 1


def test_the_old_names_are_not_in_the_help(world):
    shown = world["m"].run("--help", check=True).stdout.decode()
    listing = shown.split("Repository commands:")[1]
    commands = {line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.strip()}
    assert {"backup", "snapshots", "restore", "check", "forget", "stats", "estimate", "jobs", "config"} <= commands
    assert not commands & {"run", "points", "recover", "validate", "apply-retention", "usage"}
    backup_help = world["m"].run("backup", "--help", check=True).stdout.decode()
    assert "--config NAME" in backup_help and "--background-child" not in backup_help


# ---- usage errors ------------------------------------------------------------------------------

REFUSED = [
    (["backup", "--config", "docs", "{src}"], "backup --config NAME takes no paths"),
    (["backup", "--config", "docs", "--repo", "{root}/repo"], "give --config NAME or -r/--repo, not both"),
    (["snapshots", "--config", "docs", "-r", "{root}/repo"], "give --config NAME or -r/--repo, not both"),
    (["restore", "--config", "docs", "--target", "{root}/x", "-r", "{root}/repo"], "or -r/--repo, not both"),
    (["check", "--config", "docs", "-r", "{root}/repo"], "give --config NAME or -r/--repo, not both"),
    (["forget", "--config", "docs", "-r", "{root}/repo"], "give --config NAME or -r/--repo, not both"),
    (["stats", "--config", "docs", "-r", "{root}/repo"], "give --config NAME or -r/--repo, not both"),
    (["-r", "{root}/repo", "snapshots", "--config", "docs"], "give --config NAME or -r/--repo, not both"),
    (["--password-file", "{root}/pw", "check", "--config", "docs"], "--password-file does not go with --config"),
    (["forget", "--config", "docs", "--keep-last", "3"], "forget --config NAME applies the configuration's own"),
    (["forget", "--config", "docs", "--keep-within", "1y"], "config edit NAME --keep-within"),
    (["backup", "--config", "docs", "--exclude", "*.tmp"], "--exclude does not go with --config"),
    (["check", "--config", "docs", "--read-data-subset", "10%"], "--read-data-subset does not go with --config"),
    (["restore", "--config", "docs", "latest:/sub", "--target", "{root}/x"], "SNAPSHOT is an id or `latest`"),
    (["restore", "--config", "docs", "abcdef", "--at", "2026-01-01", "--target", "{root}/x"], "not both"),
    (["backup", "--config", "docs", "--dry-run", "--no-wait"], "--dry-run runs no job"),
    (["snapshots", "--config", "docs", "--configs"], "give --config NAME or --configs, not both"),
    (["backup", "--priority", "2", "{src}", "-r", "{root}/repo"], "--priority goes with --config NAME"),
    (["snapshots", "--since", "2026-01-01", "-r", "{root}/repo"], "--since goes with --config NAME"),
    (["stats", "--trend", "-r", "{root}/repo"], "--trend goes with --config NAME"),
    (["check", "--catalog", "{root}/other.db", "-r", "{root}/repo"], "--catalog goes with --config NAME"),
    (["restore", "--target", "{root}/x", "-r", "{root}/repo"], "restore needs SNAPSHOT"),
]


@pytest.mark.parametrize("argv, message", REFUSED, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in
                                                       enumerate(REFUSED)])
def test_mixtures_are_usage_errors_in_one_line(world, argv, message):
    argv = [a.format(src=world["src"], root=world["root"]) for a in argv]
    done = world["m"].run(*argv)
    lines = stderr_lines(done)
    assert done.returncode == 2, (argv, done.stderr.decode())
    assert len(lines) == 1 and lines[0].startswith("strongroom: ") and message in lines[0], lines
    assert done.stdout == b""


def test_global_options_before_the_command_reach_a_configuration(world, tmp_path):
    """`strongroom --catalog C --json -v snapshots --config NAME`: the options
    before the command count as if given after it."""
    m = world["m"]
    catalog = m.env["STRONGROOM_CATALOG"]
    env = {k: v for k, v in m.env.items() if k != "STRONGROOM_CATALOG"}
    done = forked_cli.run(["--catalog", catalog, "--json", "-v", "snapshots",
                           "--config", "docs"], env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert len(found) >= 2 and {s["config"] for s in found} == {"docs"}
