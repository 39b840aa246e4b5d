"""Retention inside managed configurations, storage accounting (usage, the
space on the target, the trend of the samples) and estimates of a run."""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from strongroom import BackupConfig, create_backup_manager
from strongroom.errors import UsageError
from strongroom.services.catalog import Catalog
from test_manage_cli import Managed, one_error_line, points_of, restored
from treeutil import snapshot_tree
from webdav_servers import faulty_wsgidav, run_rclone, run_wsgidav

MiB = 1024 * 1024
DAY = 86400.0
PASSWORD_ENV = {"ACCOUNTING_REPO_PASSWORD": "a password for the accounting tests"}
REPO_PASSWORD = {"STRONGROOM_PASSWORD": PASSWORD_ENV["ACCOUNTING_REPO_PASSWORD"]}


@pytest.fixture
def m(tmp_path) -> Managed:
    managed = Managed(tmp_path)
    managed.env.update(PASSWORD_ENV)
    return managed


def write_state(src: Path, seed: int, size: int = 1 * MiB) -> dict:
    """Change the source: new random data, a text file that compresses, one file gone."""
    rnd = random.Random(seed)
    src.mkdir(exist_ok=True)
    (src / f"random-{seed}.bin").write_bytes(rnd.randbytes(size))
    (src / "log.txt").write_text("".join(f"line {seed} {i}\n" for i in range(20000)))
    old = src / f"random-{seed - 2}.bin"
    if old.exists():
        old.unlink()
    return snapshot_tree(src)


def check_repo(m: Managed, repo: Path) -> dict:
    done = m.run("check", "--repo", str(repo), "--read-data", "--json", env=REPO_PASSWORD)
    assert done.returncode == 0, done.stderr.decode()
    report = [json.loads(line) for line in done.stdout.decode().splitlines()][-1]
    assert report["ok"] and not report["problems"], report
    return report


# ---- retention in a configuration --------------------------------------------------------


@pytest.mark.parametrize("after_run", ["forget", "prune"])
def test_a_configs_retention_is_applied_after_each_run(m, tmp_path, after_run):
    src, repo = tmp_path / "src", tmp_path / "repo"
    write_state(src, 0)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--password-env",
          "ACCOUNTING_REPO_PASSWORD", "--keep-last", "2", "--retention-after-run", after_run, check=True)
    shown = m.run("config", "show", "docs", check=True).stdout.decode()
    assert f"keep last 2; applied after each run ({after_run})" in shown
    states = {}
    for seed in range(1, 5):
        state = write_state(src, seed)
        states[m.summary("backup", "--config", "docs")["snapshot"]] = state
    points = points_of(m, "docs")
    assert [p["id"] for p in points] == list(states)[-2:]
    job = m.jobs("docs")[0]
    assert job["stats"]["retention"]["kept"] == 2 and len(job["stats"]["retention"]["removed"]) == 1
    report = check_repo(m, repo)
    if after_run == "prune":
        assert not report["warnings"], report
        assert job["stats"]["retention"]["bytes_freed"] > 0.9 * MiB  # the random file of the forgotten point
    else:
        assert job["stats"]["retention"]["bytes_freed"] == 0
    for point in points:
        target = tmp_path / "back" / point["id"][:8]
        m.run("restore", "--config", "docs", point["id"], "--target", str(target), check=True)
        assert snapshot_tree(restored(target, src)) == states[point["id"]]


def test_the_retention_policy_is_checked_when_it_is_given(m, tmp_path):
    src = tmp_path / "src"
    write_state(src, 0)
    add = ["config", "add", "docs", "--source", str(src), "--target-dir", str(tmp_path / "repo"),
           "--password-env", "ACCOUNTING_REPO_PASSWORD"]
    done = m.run(*add, "--retention-after-run", "prune")
    assert done.returncode == 2 and "needs a retention policy" in one_error_line(done)
    done = m.run(*add, "--keep-within", "3x")
    assert done.returncode == 2 and "cannot read duration" in one_error_line(done)
    done = m.run(*add, "--keep-daily", "-1")
    assert done.returncode == 2
    assert m.run("config", "list", "--json", check=True).stdout.count(b'"type": "config"') == 0

    m.run(*add, "--keep-daily", "7", "--keep-tag", "release,pinned", check=True)
    doc = [e for e in m.json("config", "show", "docs") if e["type"] == "config"][0]
    assert doc["retention"] == {"keep_daily": 7, "keep_tags": ["release", "pinned"]}
    assert doc["retention_after_run"] == "off"
    m.run("config", "edit", "docs", "--keep-daily", "0", "--keep-within", "30d", "--retention-after-run", "forget",
          check=True)
    doc = [e for e in m.json("config", "show", "docs") if e["type"] == "config"][0]
    assert doc["retention"] == {"keep_within": "30d", "keep_tags": ["release", "pinned"]}
    assert doc["retention_after_run"] == "forget"
    m.run("config", "edit", "docs", "--no-retention", check=True)
    doc = [e for e in m.json("config", "show", "docs") if e["type"] == "config"][0]
    assert doc["retention"] == {} and doc["retention_after_run"] == "off"
    done = m.run("forget", "--config", "docs")
    assert done.returncode == 2 and "has no retention policy" in one_error_line(done)

    for bad in ({"keep_dayly": 3}, {"keep_daily": -1}, {"keep_daily": True}, {"keep_within": 30},
                {"keep_tags": "release"}):
        with pytest.raises(UsageError):
            BackupConfig(name="x", source_paths=["/"], target_path="/tmp/x", retention=bad).validate()
    with pytest.raises(UsageError):
        BackupConfig(name="x", source_paths=["/"], target_path="/tmp/x", retention={"keep_last": 1},
                     retention_after_run="sometimes").validate()


def test_apply_retention_touches_only_its_own_configuration(m, tmp_path):
    src, other, repo = tmp_path / "src", tmp_path / "other", tmp_path / "repo"
    write_state(src, 0)
    write_state(other, 100)
    for name, source in (("docs", src), ("other", other)):
        m.run("config", "add", name, "--source", str(source), "--target-dir", str(repo), "--password-env",
              "ACCOUNTING_REPO_PASSWORD", "--keep-last", "1", check=True)
    for seed in range(1, 4):
        write_state(src, seed)
        m.run("backup", "--config", "docs", check=True)
        m.run("backup", "--config", "other", check=True)
    assert len(points_of(m, "docs")) == 3 and len(points_of(m, "other")) == 3

    events = m.json("forget", "--config", "docs", "--dry-run", "--prune")
    planned = [e for e in events if e["type"] == "point"]
    assert [p["keep"] for p in planned] == [True, False, False]
    assert planned[0]["reasons"] == ["last"] and planned[1]["reasons"] == []
    summary = events[-1]
    assert summary["dry_run"] and summary["removed"] == [] and summary["prune"]["bytes_freed"] == 0
    assert len(points_of(m, "docs")) == 3

    summary = m.summary("forget", "--config", "docs", "--prune")
    assert len(summary["removed"]) == 2 and summary["bytes_freed"] > 1.8 * MiB
    assert len(points_of(m, "docs")) == 1 and len(points_of(m, "other")) == 3
    assert not check_repo(m, repo)["warnings"]


# ---- usage and the space on the target ---------------------------------------------------


def test_usage_counts_the_latest_point_and_the_space_on_the_target(m, tmp_path):
    src, repo = tmp_path / "src", tmp_path / "repo"
    write_state(src, 0)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--password-env",
          "ACCOUNTING_REPO_PASSWORD", check=True)
    m.run("backup", "--config", "docs", check=True)
    write_state(src, 1)
    m.run("backup", "--config", "docs", check=True)
    latest = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    usage = m.summary("stats", "--configs")
    docs = usage["configs"]["docs"]
    assert docs["snapshots"] == 2 and docs["restore_size"] == latest  # the latest point, not the sum
    assert docs["data_blobs"] >= 3 and docs["tree_blobs"] >= 2
    space = usage["targets"][f"local:{repo}"]
    free = shutil.disk_usage(repo).free
    assert space["available"] == pytest.approx(free, rel=0.05)
    assert space["total"] == space["used"] + space["available"]
    text = m.run("stats", "--configs", check=True).stdout.decode()
    assert f"target local:{repo}: " in text and "available" in text

    stats = m.run("stats", "--repo", str(repo), "--json", env=REPO_PASSWORD)
    report = json.loads(stats.stdout.decode().splitlines()[-1])
    assert report["latest_restore_size"] == latest
    assert report["target"]["available"] == pytest.approx(free, rel=0.05)


def test_the_dedup_ratio_of_data_without_duplicates_is_one(m, tmp_path, monkeypatch):
    # Many small folders: their trees weigh a few percent of the data, which
    # must not count as data the files need.
    src, repo = tmp_path / "src", tmp_path / "repo"
    rnd = random.Random(8)
    for d in range(30):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(4):
            (src / f"d{d}" / f"f{f}.bin").write_bytes(rnd.randbytes(rnd.randrange(100, 3000)))
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--password-env",
          "ACCOUNTING_REPO_PASSWORD", check=True)
    m.run("backup", "--config", "docs", check=True)
    docs = m.summary("stats", "--configs")["configs"]["docs"]
    assert docs["dedup_ratio"] == 1.0
    assert docs["unique_size"] > docs["restore_size"]  # the trees are counted there, with the data
    text = m.run("stats", "--configs", check=True).stdout.decode()
    assert " 1.0 " in text

    # The same data again: every byte of the second point is deduplicated.
    m.run("backup", "--config", "docs", "--full", check=True)
    assert m.summary("stats", "--configs")["configs"]["docs"]["dedup_ratio"] == 2.0
    # The Python API says the same.
    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("ACCOUNTING_REPO_PASSWORD", PASSWORD_ENV["ACCOUNTING_REPO_PASSWORD"])
    manager = create_backup_manager(db_path=str(m.catalog), secrets_path=str(m.secrets))
    try:
        assert manager.storage.usage_of(manager.get_config("docs")).dedup_ratio == 2.0
    finally:
        manager.close()
        manager.catalog.close()


def test_the_quota_a_webdav_server_reports_is_shown(m, tmp_path):
    src = tmp_path / "src"
    write_state(src, 0)
    # wsgidav answers RFC 4331 quota properties from its file system; rclone's
    # server does not answer them at all.
    with run_wsgidav() as dav, run_rclone() as plain:
        for client, server in (("quota", dav), ("plain", plain)):
            m.run("client", "add", client, "--url", server.url, "--user", server.username,
                  env={"STRONGROOM_WEBDAV_PASSWORD": server.password}, check=True)
            m.run("config", "add", client, "--source", str(src), "--client", client, "--target-path", "repo",
                  "--password-env", "ACCOUNTING_REPO_PASSWORD", check=True)
            m.run("backup", "--config", client, check=True)
        usage = m.summary("stats", "--configs")
        quota = usage["configs"]["quota"]["target"]
        assert quota["available"] == pytest.approx(shutil.disk_usage(dav.root).free, rel=0.05)
        assert quota["used"] > 0 and quota["total"] == quota["used"] + quota["available"]
        plain_space = usage["configs"]["plain"]["target"]
        assert plain_space["used"] is None and plain_space["available"] is None
        assert "does not report its space" in m.run("stats", "--configs", check=True).stdout.decode()


# ---- the trend ----------------------------------------------------------------------------


def add_samples(catalog_path: Path, config: str, series: list[tuple[float, int]], target: str,
                available: int | None) -> None:
    """Samples as runs at these times would have left them."""
    clock = iter([t for t, _ in series])
    catalog = Catalog(catalog_path, clock=lambda: next(clock))
    try:
        for _, size in series:
            catalog.add_sample(config, {"repository_size": size, "stored_size": size, "restore_size": 2 * size,
                                        "points": 1, "target": {"url": target, "used": size,
                                                                "available": available}})
    finally:
        catalog.close()


def test_the_trend_gives_growth_and_the_day_the_target_is_full(tmp_path):
    db = tmp_path / "catalog.db"
    manager = create_backup_manager(db_path=str(db), secrets_path=str(tmp_path / "secrets.json"))
    try:
        now = manager.catalog.now()
        start = now - 20 * DAY
        # docs grows 100 MB a day on a target with 3 GB free: full in 30 days.
        add_samples(db, "docs", [(start + i * DAY, 1_000_000_000 + i * 100_000_000) for i in range(10)],
                    "webdav+https://dav.example/repo", 3_000_000_000)
        # shrinks after a prune: not filling.
        add_samples(db, "photos", [(start + i * DAY, 5_000_000_000 - i * 1_000_000) for i in range(5)],
                    "local:/srv/photos", 10_000_000_000)
        # samples an hour apart say nothing yet.
        add_samples(db, "fresh", [(now - 600, 10), (now - 300, 20_000_000)], "local:/srv/fresh", 1000)
        # two configurations of one repository: one series, fitted together.
        add_samples(db, "a", [(start + i * 2 * DAY, 100 * 2**20 + i * 2 * 2**20) for i in range(5)],
                    "local:/srv/shared", None)
        add_samples(db, "b", [(start + (i * 2 + 1) * DAY, 100 * 2**20 + (i * 2 + 1) * 2**20) for i in range(5)],
                    "local:/srv/shared", None)
        trend = manager.storage.get_storage_trend(days=90)
    finally:
        manager.close()

    docs = trend.configs["docs"].trend
    assert docs.growth_per_day == 100_000_000 and docs.growth_per_week == 700_000_000
    assert docs.full_in_days == 30.0
    last = start + 9 * DAY
    assert docs.projected_full == datetime.fromtimestamp(last + 30 * DAY, timezone.utc).date()
    assert len(trend.configs["docs"].samples) == 10 and docs.span_days == 9.0
    assert trend.configs["docs"].samples[-1].time == datetime.fromtimestamp(last, timezone.utc)
    photos = trend.configs["photos"].trend
    assert photos.growth_per_day == -1_000_000 and photos.not_filling and photos.projected_full is None
    assert trend.configs["fresh"].trend.growth_per_day is None
    shared = trend.targets["local:/srv/shared"]
    assert shared.configs == ("a", "b") and shared.trend.growth_per_day == 2**20
    assert shared.trend.projected_full is None and shared.trend.available is None
    assert trend.targets["webdav+https://dav.example/repo"].trend.full_in_days == 30.0
    as_json = trend.to_dict()["configs"]["docs"]
    assert as_json["trend"]["projected_full"] == docs.projected_full.isoformat()
    assert as_json["samples"][0]["time"].endswith("Z")


def test_usage_trend_from_the_command_line(m, tmp_path):
    src, repo = tmp_path / "src", tmp_path / "repo"
    write_state(src, 0)
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--password-env",
          "ACCOUNTING_REPO_PASSWORD", check=True)
    assert "no storage samples" in m.run("stats", "--configs", "--trend", check=True).stdout.decode()
    for seed in (1, 2):
        write_state(src, seed)
        m.run("backup", "--config", "docs", check=True)
    # Every run leaves a sample with the target's space in it.
    with Catalog(m.catalog) as catalog:
        samples = catalog.list_samples("docs")
        assert len(samples) == 2
        assert samples[-1]["target"]["url"] == f"local:{repo}" and samples[-1]["target"]["available"] > 0
        now = catalog.now()
    assert "no trend yet" in m.run("stats", "--configs", "--trend", check=True).stdout.decode()
    add_samples(m.catalog, "docs", [(now - 14 * DAY + i * DAY, i * 100_000) for i in range(7)],
                f"local:{repo}", 700 * MiB)
    lines = m.json("stats", "--config", "docs", "--trend")
    config = [e for e in lines if e["type"] == "config"][0]
    assert config["config_name"] == "docs" and len(config["samples"]) == 9
    assert config["trend"]["growth_per_day"] is not None and config["trend"]["growth_per_day"] > 0
    text = m.run("stats", "--configs", "--trend", check=True).stdout.decode()
    assert "per day" in text and "full in about" in text
    done = m.run("stats", "--config", "nope", "--trend")
    assert done.returncode != 0 and "nope" in one_error_line(done)


# ---- estimates ----------------------------------------------------------------------------


def test_the_estimate_of_a_run_matches_the_run(m, tmp_path):
    src, repo = tmp_path / "src", tmp_path / "repo"
    src.mkdir()
    (src / "text.txt").write_text("".join(f"record {i} of the ledger\n" for i in range(400000)))
    (src / "noise.bin").write_bytes(random.Random(3).randbytes(6 * MiB))
    m.run("config", "add", "docs", "--source", str(src), "--target-dir", str(repo), "--password-env",
          "ACCOUNTING_REPO_PASSWORD", check=True)
    def stored() -> list[Path]:
        return sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file() and "locks" not in p.parts)

    before = stored()
    first = m.summary("estimate", "docs")
    assert stored() == before  # a dry run stores nothing
    assert first["seconds"] is None  # no run measured yet
    m.run("backup", "--config", "docs", check=True)
    job = m.jobs("docs")[0]["stats"]
    assert first["bytes_to_read"] == job["bytes_read"]
    assert first["new_bytes"] == job["data_added_raw"]
    assert first["bytes_likely_stored"] == pytest.approx(job["data_added_packed"], rel=0.02)
    assert first["compression_ratio_from"] == "sampled"

    (src / "more.txt").write_text("".join(f"another {i}\n" for i in range(300000)))
    second = m.summary("estimate", "docs")
    assert second["seconds"] is not None and second["read_bytes_per_second"] > 0
    assert second["requests"] >= second["packs"] + 3
    m.run("backup", "--config", "docs", check=True)
    job = m.jobs("docs")[0]["stats"]
    assert second["bytes_to_read"] == job["bytes_read"]
    assert second["bytes_likely_stored"] == pytest.approx(job["data_added_packed"], rel=0.02)
    assert "estimate: read" in m.run("estimate", "docs", check=True).stdout.decode()


def test_backup_dry_run_estimates_with_the_compression_it_sees(cli, tmp_path):
    text, noise = tmp_path / "text", tmp_path / "noise"
    text.mkdir()
    noise.mkdir()
    (text / "t.txt").write_text("".join(f"entry {i}\n" for i in range(300000)))
    (noise / "n.bin").write_bytes(random.Random(4).randbytes(3 * MiB))
    repo = tmp_path / "repo"
    cli.run("init", "--repo", str(repo), check=True)
    estimates = {}
    for source in (text, noise):
        done = cli.run("backup", "--repo", str(repo), str(source), "--dry-run", "--json", check=True)
        summary = [json.loads(line) for line in done.stdout.decode().splitlines()][-1]
        estimates[source.name] = summary["estimate"]
    assert estimates["text"]["compression_ratio"] > 3
    assert estimates["noise"]["compression_ratio"] == pytest.approx(1.0, abs=0.01)
    assert estimates["noise"]["bytes_likely_stored"] >= 3 * MiB
    done = cli.run("backup", "--repo", str(repo), str(noise), "--dry-run", check=True)
    assert "estimate: read 3.00 MiB" in done.stdout.decode()
    assert cli.run("snapshots", "--repo", str(repo), "--json", check=True).stdout.count(b'"id"') == 0


def test_an_estimate_on_a_budgeted_target_counts_the_budget(m, tmp_path):
    src = tmp_path / "src"
    write_state(src, 0, size=2 * MiB)
    with run_wsgidav() as dav:
        env = {"STRONGROOM_WEBDAV_PASSWORD": dav.password}
        m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username, env=env, check=True)
        m.run("config", "add", "docs", "--source", str(src), "--client", "cloud", "--target-path", "repo",
              "--password-env", "ACCOUNTING_REPO_PASSWORD", check=True)
        budget = {"STRONGROOM_WEBDAV_BUDGET": "360/3600"}  # one request every ten seconds
        estimate = m.summary("estimate", "docs", env=budget)
        assert estimate["request_budget_per_second"] == pytest.approx(0.1)
        assert estimate["seconds"] >= estimate["requests"] * 10
        assert "the request budget allows 360 per hour" in m.run("estimate", "docs", env=budget,
                                                                    check=True).stdout.decode()


def test_the_sample_after_a_run_costs_two_requests_on_webdav(m, tmp_path):
    src = tmp_path / "src"
    write_state(src, 0)
    with faulty_wsgidav() as (dav, mw):
        m.run("client", "add", "cloud", "--url", dav.url, "--user", dav.username,
              env={"STRONGROOM_WEBDAV_PASSWORD": dav.password}, check=True)
        m.run("config", "add", "docs", "--source", str(src), "--client", "cloud", "--target-path", "repo",
              "--password-env", "ACCOUNTING_REPO_PASSWORD", check=True)
        m.run("backup", "--config", "docs", check=True)
        mw.reset_counts()
        m.run("backup", "--config", "docs", check=True)
        log = mw.log
        # The run ends by releasing its lock; after it come only the sample's
        # snapshot listing and its quota request: pack sizes come from the
        # index the run holds, not from listing every pack folder.
        released = max(i for i, r in enumerate(log) if r.method == "DELETE" and "/locks/" in r.path)
        after = [(r.method, r.path.rsplit("/repo", 1)[-1]) for r in log[released + 1:]]
        assert after == [("PROPFIND", "/snapshots/"), ("PROPFIND", "/")], after
        with Catalog(m.catalog) as catalog:
            sample = catalog.list_samples("docs")[-1]
        usage = m.summary("stats", "--configs")["configs"]["docs"]
        assert sample["repository_size"] == usage["repository_size"] and sample["points"] == 2
        assert sample["target"]["available"] == pytest.approx(shutil.disk_usage(dav.root).free, rel=0.05)
