"""forget through the command line, on a real repository."""

from __future__ import annotations

import json


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def make_points(cli, src, times, tag_of=None):
    ids = {}
    for when in times:
        (src / "f.txt").write_text(when)
        args = ["backup", str(src), "--time", when, "--json"]
        if tag_of and when in tag_of:
            args += ["--tag", tag_of[when]]
        ids[when] = summary(cli.run(*args))["snapshot"]
    return ids


def test_forget_keeps_what_the_policy_says_and_check_stays_clean(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cli.run("init", check=True)
    times = ["2024-01-31 10:00", "2024-02-10 10:00", "2024-02-29 10:00", "2024-03-01 09:00", "2024-03-01 18:00"]
    ids = make_points(cli, src, times, tag_of={"2024-01-31 10:00": "keep"})

    dry = cli.run("forget", "--keep-daily", "2", "--keep-monthly", "2", "--keep-tag", "keep", "--dry-run", "--json")
    lines = [json.loads(line) for line in dry.stdout.decode().splitlines()]
    [group] = [line for line in lines if line["type"] == "group"]
    verdicts = {p["id"]: (p["keep"], p["reasons"]) for p in group["points"]}
    assert verdicts[ids["2024-03-01 18:00"]] == (True, ["daily", "monthly"])
    assert verdicts[ids["2024-02-29 10:00"]] == (True, ["daily", "monthly"])
    assert verdicts[ids["2024-01-31 10:00"]] == (True, ["tag"])
    assert verdicts[ids["2024-03-01 09:00"]][0] is False and verdicts[ids["2024-02-10 10:00"]][0] is False
    assert len(summary(cli.run("snapshots", "--json"))) == 5  # a dry run removes nothing

    done = summary(cli.run("forget", "--keep-daily", "2", "--keep-monthly", "2", "--keep-tag", "keep", "--json"))
    assert sorted(done["removed"]) == sorted([ids["2024-03-01 09:00"], ids["2024-02-10 10:00"]])
    assert len(summary(cli.run("snapshots", "--json"))) == 3
    assert cli.run("check", "--read-data").returncode == 0
    restored = tmp_path / "restore"
    cli.run("restore", ids["2024-02-29 10:00"][:8], "--target", str(restored), check=True)
    assert (restored / src.relative_to("/") / "f.txt").read_text() == "2024-02-29 10:00"


def test_forget_refuses_to_remove_everything_unless_told(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cli.run("init", check=True)
    make_points(cli, src, ["2024-01-01 10:00", "2024-01-02 10:00"])
    refused = cli.run("forget", "--keep-tag", "nothing-has-this")
    assert refused.returncode == 2 and "every recovery point" in refused.stderr.decode()
    assert len(summary(cli.run("snapshots", "--json"))) == 2
    done = summary(cli.run("forget", "--keep-tag", "nothing-has-this", "--allow-remove-all", "--json"))
    assert len(done["removed"]) == 2
    refused = cli.run("forget")
    assert refused.returncode == 2 and "no retention rule" in refused.stderr.decode()


def test_forget_groups_by_host_and_paths(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    cli.run("init", check=True)
    for src in (a, b):
        for when in ("2024-01-01 10:00", "2024-01-02 10:00"):
            cli.run("backup", str(src), "--time", when, check=True)
    done = summary(cli.run("forget", "--keep-last", "1", "--json"))
    assert len(done["removed"]) == 2 and done["kept"] == 2  # the newest of each path
    done = summary(cli.run("forget", "--keep-last", "1", "--group-by", "", "--json"))
    assert len(done["removed"]) == 1 and done["kept"] == 1


def test_forget_named_snapshots(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cli.run("init", check=True)
    ids = []
    for i in range(3):
        (src / f"f{i}").write_bytes(bytes([i]) * 100_000)
        done = cli.run("backup", str(src), "--json", check=True)
        ids.append(json.loads(done.stdout.decode().splitlines()[-1])["snapshot"])
    done = cli.run("forget", ids[0][:8], ids[1], "--dry-run", "--json", check=True)
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    assert summary["removed"] == [] and summary["dry_run"]
    def listed() -> list[str]:
        return [e["id"] for e in json.loads(cli.run("snapshots", "--json", check=True).stdout)]

    assert listed() == ids

    done = cli.run("forget", ids[1][:8], "--json", check=True)
    assert json.loads(done.stdout.decode().splitlines()[-1])["removed"] == [ids[1]]
    assert listed() == [ids[0], ids[2]]

    for args, message, code in ((["forget", ids[0], "--keep-last", "1"], "not both", 2),
                                (["forget", "ffffffff"], "no snapshot", 1),
                                (["forget", "latest"], "not 'latest'", 2),
                                (["forget", ids[0], "--tag", "x"], "leave out", 2)):
        done = cli.run(*args)
        assert done.returncode == code and message in done.stderr.decode(), (args, done.stderr.decode())
    done = cli.run("forget", ids[0], "--prune", "--json", check=True)
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    assert summary["removed"] == [ids[0]] and summary["prune"]["bytes_freed"] > 0
    report = json.loads(cli.run("check", "--read-data", "--json").stdout.decode().splitlines()[-1])
    assert report["ok"] and not report["warnings"], report
