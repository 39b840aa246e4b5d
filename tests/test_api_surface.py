"""The Python API as `dir()`, `help()` and a type checker see it: every public
name listed, documented and fully annotated; results frozen, with UTC
datetimes; and the package root light until a name is used."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import typing
from datetime import datetime, timezone
from pathlib import Path

import pytest

import strongroom

RESULTS = ["BackupResult", "BackupStatistics", "BackupSummary", "CleanupResult", "ConfigTrend", "ConnectionReport",
           "CopyResult",
           "Estimate", "Job",
           "RecoveryPlan", "RecoveryPoint", "RecoveryProgress", "RetentionDecision", "RetentionResult",
           "StorageTrend", "StorageUsage", "TargetSpace", "TargetTrend", "TrendLine", "UsageReport", "UsageSample",
           "UsageTotals", "ValidationReport"]


def public_members(cls: type) -> list[tuple[str, object]]:
    """The methods and properties a class defines itself (not inherited from object)."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in ("__init__", "__enter__"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            found.append((name, value))
    return found


def missing(function, where: str) -> list[str]:
    """Parameters and returns without annotations (names a type checker resolves need not import here)."""
    problems = []
    signature = inspect.signature(function)
    for name, parameter in signature.parameters.items():
        if name in ("self", "cls"):
            continue
        if parameter.annotation is inspect.Parameter.empty:
            problems.append(f"{where}: parameter {name} has no annotation")
    if signature.return_annotation is inspect.Signature.empty:
        problems.append(f"{where}: no return annotation")
    return problems


def test_dir_and_all_list_the_api():
    names = set(strongroom.__all__)
    assert {"BackupManager", "BackupConfig", "create_backup_manager", "RecoveryService", "WebDAVService",
            "WebDAVCredentials", "BackupValidator", "StorageManager", "RecoveryPointManager", "RecoveryExecutor",
            "JobHandle", *RESULTS} <= names
    assert names <= set(dir(strongroom))
    for name in names:
        assert getattr(strongroom, name) is not None
    from strongroom.services import api
    assert set(api.__all__) == names - {"__version__"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        strongroom.Nope  # noqa: B018


def test_every_public_class_and_method_is_documented_and_annotated():
    problems = []
    for name in strongroom.__all__:
        if name == "__version__":
            continue
        value = getattr(strongroom, name)
        if not inspect.getdoc(value):
            problems.append(f"{name}: no docstring")
        if inspect.isfunction(value):
            problems += missing(value, name)
            continue
        if not inspect.isclass(value) or issubclass(value, BaseException):
            continue
        for member, function in public_members(value):
            where = f"{name}.{member}"
            target = function.fget if isinstance(function, property) else function
            if member != "__init__" and not inspect.getdoc(target):
                problems.append(f"{where}: no docstring")
            if member == "__init__" and dataclasses.is_dataclass(value):
                continue  # the dataclass's own, from the annotated fields
            problems += missing(target, where)
    assert problems == []


def test_results_are_frozen_with_aware_datetimes_and_json_able():
    for name in RESULTS:
        cls = getattr(strongroom, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            # times are datetimes, never epoch floats under a time-like name
            if field.name.endswith(("_at", "time", "started", "last_success")):
                assert "datetime" in str(hints[field.name]), f"{name}.{field.name}: {hints[field.name]}"
        assert callable(cls.to_dict), name

    when = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)
    job = strongroom.Job(1, "home", "full", 0, "succeeded", 1, 3, when, when, when, None, None, "ab" * 32,
                         strongroom.BackupSummary(files_new=2, duration=1.5))
    doc = job.to_dict()
    assert doc["queued_at"] == "2026-11-01T08:30:00Z" and doc["summary"]["files_new"] == 2
    assert json.loads(json.dumps(doc)) == doc
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = "failed"  # type: ignore[misc]


def test_a_string_for_a_list_of_paths_is_refused_when_the_config_is_made():
    from strongroom.errors import UsageError

    with pytest.raises(UsageError, match=r"^config home: source_paths: give a list \(e.g. \[\"/data\"\]\), "
                                         r"not one string$"):
        strongroom.BackupConfig(name="home", source_paths="/home/me")  # type: ignore[arg-type]
    cases = [({"compression": "rar"}, "compression: unknown compression 'rar'"),
             ({"retention": {"keep_daily": -1}}, "retention.keep_daily: Input should be greater than or equal to 0"),
             ({"retention": {"keep_dayly": 3}}, "retention.keep_dayly: is not a known field"),
             ({"retention": {"keep_within": "a while"}}, "retention.keep_within: cannot read duration"),
             ({"max_attempts": 0}, "max_attempts: Input should be greater than or equal to 1"),
             ({"exclude_larger_than": "huge"}, "exclude_larger_than: cannot read size 'huge'"),
             ({"retention_after_run": "sometimes"}, "retention_after_run: use one of off, forget, prune"),
             ({"tags": "daily"}, "tags: give a list"),
             ({"encrypt": "yes"}, "encrypt: give True or False")]
    for fields, message in cases:
        with pytest.raises(UsageError) as refused:
            strongroom.BackupConfig(name="home", source_paths=["/home/me"], **fields)
        assert str(refused.value).startswith(f"config home: {message}"), (fields, str(refused.value))
        assert "\n" not in str(refused.value)
    # A password of the wrong type is refused without being echoed.
    with pytest.raises(UsageError) as refused:
        strongroom.BackupConfig(name="home", source_paths=["/x"], password=123456789)  # type: ignore[arg-type]
    assert "123456789" not in str(refused.value)


def test_a_missing_source_path_is_refused_when_the_config_is_added(tmp_path, monkeypatch):
    from strongroom.errors import UsageError

    monkeypatch.setenv("STRONGROOM_SECRETS_BACKEND", "file")
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    here, gone = tmp_path / "here", tmp_path / "not-mounted"
    here.mkdir()
    with strongroom.create_backup_manager(db_path=str(tmp_path / "c.db")) as manager:
        config = strongroom.BackupConfig(name="home", source_paths=[str(here), str(gone)],
                                         target_path=str(tmp_path / "repo"))
        with pytest.raises(UsageError, match=f"^config home: source path {gone} does not exist$"):
            manager.add_config(config)
        assert manager.list_configs() == [] and not (tmp_path / "repo").exists()

        manager.add_config(strongroom.BackupConfig(name="home", source_paths=[str(here)],
                                                   target_path=str(tmp_path / "repo")))
        here.rmdir()  # a disk unmounted since: editing the retention still works
        edited = manager.get_config("home")
        edited.retention = {"keep_last": 3}
        manager.update_config(edited)
        assert manager.get_config("home").retention == {"keep_last": 3}
        edited.source_paths = [str(gone)]
        with pytest.raises(UsageError, match="source path .*not-mounted does not exist"):
            manager.update_config(edited)


def test_old_stored_configurations_still_load():
    # The stored form of a configuration as earlier versions wrote it (to the
    # catalog and into the repository), including a key this version dropped.
    doc = {"name": "docs", "source_paths": ["/srv/docs"], "target_client_id": None, "target_path": "/mnt/r",
           "encrypt": True, "compression": True, "password_file": None, "password_env": "DOCS_PW", "excludes": [],
           "exclude_caches": False, "exclude_if_present": [], "exclude_larger_than": None, "one_file_system": False,
           "tags": [], "max_attempts": 3, "secret_ref": None, "retention": {"keep_daily": 7},
           "retention_after_run": "off", "a_field_of_a_newer_version": 1}
    config = strongroom.BackupConfig.from_doc(doc)
    assert config.to_doc() == {k: v for k, v in doc.items() if k != "a_field_of_a_newer_version"}
    assert json.loads(json.dumps(config.to_doc())) == config.to_doc()


def child(code: str) -> list[str]:
    src = str(Path(strongroom.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120, check=True)
    return done.stdout.decode().split()


def test_the_package_root_and_the_command_line_start_light():
    heavy = ["strongroom.services.api", "strongroom.services.backup_manager", "strongroom.repo.repository",
             "pydantic", "sqlite3"]
    probe = "import sys; {} print(*[m for m in {!r} if m in sys.modules])"
    assert child(probe.format("import strongroom; strongroom.__version__; dir(strongroom);", heavy)) == []
    # The command line loads its commands, but never pydantic.
    assert "pydantic" not in child(probe.format("import strongroom.cli.main;", heavy))
    # A name is imported when it is used.
    assert child(probe.format("import strongroom; strongroom.BackupConfig;", ["strongroom.services.configs"])) \
        == ["strongroom.services.configs"]
    src = Path(strongroom.__file__).parent
    assert (src / "py.typed").is_file()


def test_help_shows_the_api():
    text = child("import pydoc, strongroom; print(pydoc.render_doc(strongroom, renderer=pydoc.plaintext))")
    joined = " ".join(text)
    for name in ("create_backup_manager", "BackupManager", "RecoveryService", "BackupResult", "JobHandle"):
        assert name in joined


def test_the_example_in_the_package_docstring_runs(tmp_path):
    doc = strongroom.__doc__
    example = doc[doc.index("    import strongroom\n"):doc.index("The API is imported on first use")]
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    code = textwrap.dedent(example)
    for placeholder, real in (("/home/me/data", data), ("/mnt/backup/home", tmp_path / "repo"),
                              ("/tmp/restore", tmp_path / "restore"), ("catalog.db", tmp_path / "c.db")):
        assert placeholder in code
        code = code.replace(placeholder, str(real))
    src = str(Path(strongroom.__file__).parent.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("STRONGROOM_CATALOG", "STRONGROOM_SECRETS")}
    env.update(PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]), STRONGROOM_SECRETS_BACKEND="file",
               STRONGROOM_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    snapshot_id, files_new = done.stdout.decode().split()
    assert len(snapshot_id) == 64 and files_new == "1"
    assert (tmp_path / "restore" / str(data / "a.txt").lstrip("/")).read_text() == "alpha\n"


def test_webdav_credentials_are_checked_when_made():
    from strongroom.errors import UsageError

    cases = [(("me", "pw", "https://dav.example.com:99999/dav/"), "invalid port number"),
             (("me", "pw", "ftp://dav.example.com/"), "URL scheme should be 'http' or 'https'"),
             (("me", "pw", "dav.example.com/dav"), "relative URL without a base"),
             (("me", "pw", "https://dav.example.com/", "dropbox"), "unknown WebDAV service 'dropbox'")]
    for args, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)) as refused:
            strongroom.WebDAVCredentials(*args)
        assert "pw" not in str(refused.value).replace("https", "")
    with pytest.raises(UsageError, match="^WebDAV credentials: password: give text$"):
        strongroom.WebDAVCredentials("me", 1234, "https://dav.example.com/")  # type: ignore[arg-type]
    kept = strongroom.WebDAVCredentials("me", "pw", "http://192.168.1.5:8080/dav/", "Nextcloud")
    assert kept.url == "http://192.168.1.5:8080/dav/"  # kept as given, not rewritten
