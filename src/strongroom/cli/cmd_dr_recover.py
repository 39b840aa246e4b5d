"""`dr kit` and `dr recover`: the recovery kit of a plan, and recovery from
nothing (the repositories alone) on a new machine."""

from __future__ import annotations

import getpass
import sys
from types import SimpleNamespace

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.options import read_password, read_webdav_password
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.errors import UsageError
from strongroom.words import plural


def _warn(message: str) -> None:
    print(f"strongroom: warning: {message}", file=sys.stderr)


@click.command("kit")
@manage_options
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the kit to this file (mode 0600) instead of printing it.")
@click.option("--include-passwords", is_flag=True,
              help="Put the WebDAV account passwords in the kit too (else recovery asks for them).")
def dr_kit(m: Manage, name, output, include_passwords) -> None:
    """The recovery kit of plan NAME: repositories, keys, commands.

    One page to print and keep away from this machine: every repository the
    plan needs with its password, the WebDAV accounts (their passwords only
    with --include-passwords) and the commands that recover the plan on a
    new machine. It ends with the same kit as a block of JSON that
    `strongroom dr recover --kit FILE` reads.
    """
    from strongroom.dr.kit import KIT_NOTICE, make_kit, write_kit

    with m.manager() as manager:
        kit, warnings = make_kit(manager, name, include_passwords)
    path = write_kit(kit, output) if output else None
    for warning in warnings:
        _warn(warning)
    if m.json:
        if path:
            emit_json({"type": "summary", "plan": kit.plan, "plan_version": kit.plan_version, "output": path,
                       "webdav_passwords": kit.webdav_passwords,
                       "repositories": [{"location": r.location, "repository_id": r.repository_id,
                                         "configs": list(r.configs)} for r in kit.repositories]})
        else:
            # As `key export --json`: the kit is what was asked for.
            emit_json({"type": "recovery_kit", **kit.to_doc(), "notice": KIT_NOTICE})
        return
    if path:
        print(f"wrote the recovery kit of plan {kit.plan} ({plural(len(kit.repositories), 'repository')}) "
              f"to {path}")
        print(KIT_NOTICE)
    else:
        sys.stdout.write(kit.page())


def _ask_webdav_password(password_file: str | None):
    def ask(username: str, url: str) -> str:
        password = read_webdav_password(password_file)
        if password:
            return password
        if sys.stdin.isatty():
            return getpass.getpass(f"WebDAV password for {username} at {url}: ")
        raise UsageError(f"no WebDAV password for {username} at {url}: set STRONGROOM_WEBDAV_PASSWORD "
                         "or use --webdav-password-file")
    return ask


@click.command("recover")
@manage_options
@click.option("--kit", "kit_file", type=click.Path(dir_okay=False), help="The recovery kit of a plan (dr kit).")
@click.option("--repo", "repos", multiple=True, metavar="URL",
              help="A repository to read from (repeatable): a path, or webdav+https://USER@HOST/PATH.")
@click.option("--plan", "plan_name", metavar="NAME",
              help="Recover this plan; without it, list what the repositories hold.")
@click.option("--target-base", type=click.Path(file_okay=False),
              help="Restore the steps below this directory (default: the plan's own).")
@click.option("--test", is_flag=True, help="Rehearse the plan into a scratch area instead of recovering it.")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="With --repo: read the repository password from this file.")
@click.option("--webdav-vendor", type=click.Choice(["nutstore", "nextcloud", "owncloud", "generic"],
                                                   case_sensitive=False),
              help="With --repo on WebDAV: the service (default: guessed from the host).")
@click.option("--webdav-password-file", type=click.Path(dir_okay=False),
              help="Read the WebDAV password from this file (else the kit, STRONGROOM_WEBDAV_PASSWORD, a prompt).")
def dr_recover(m: Manage, kit_file, repos, plan_name, target_base, test, password_file, webdav_vendor,
               webdav_password_file) -> int:
    """Recover a plan from its repositories alone.

    The configurations and plans are read from the repositories (named by a
    recovery kit, or by --repo with the password from STRONGROOM_PASSWORD,
    STRONGROOM_PASSWORD_FILE, --password-file or a prompt); nothing of an
    earlier state is needed. Without --plan, what they hold is listed. With
    --plan, the catalog entries the plan needs are rebuilt and the plan is
    run (with --test, rehearsed).
    """
    import os

    from strongroom.dr.kit import read_kit
    from strongroom.dr.recover import Recovery, source_from_url, sources_from_kit

    if bool(kit_file) == bool(repos):
        raise UsageError("give --kit FILE or --repo URL")
    if test and target_base:
        raise UsageError("--test rehearses into a scratch area; --target-base is for a recovery")
    if kit_file:
        if password_file or webdav_vendor:
            raise UsageError("--password-file and --webdav-vendor go with --repo; the kit has both")
        sources = sources_from_kit(read_kit(kit_file))
    else:
        secret = read_password(SimpleNamespace(password_file=password_file, password_command=None))
        text = secret.decode("utf-8", "surrogateescape")
        sources = [source_from_url(url, text, webdav_vendor) for url in repos]
    with m.manager() as manager:
        recovery = Recovery(manager, sources, _ask_webdav_password(webdav_password_file))
        found = recovery.read()
        for warning in found.warnings:
            _warn(warning)
        if not plan_name:
            _list(m, found, kit_file)
            return 0
        plan = recovery.rebuild(plan_name)
    # The catalog now holds what the plan needs: it runs as `dr run` / `dr test` would.
    from strongroom.cli.cmd_dr_run import _follow
    if test:
        return _follow(m, plan.name, "test", trigger="recover", scratch=None, keep=False)
    return _follow(m, plan.name, "run", trigger="recover",
                   target_base=os.path.abspath(target_base) if target_base else None, at=None)


def _list(m: Manage, found, kit_file: str | None) -> None:
    doc = found.to_doc()
    if m.json:
        emit_json({"type": "summary", **doc})
        return
    for repo in doc["repositories"]:
        print(f"repository {terminal_safe(repo['location'])} (id {repo['repository_id'][:8]}): "
              f"configurations {terminal_safe(', '.join(repo['configs']) or 'none')}; "
              f"plans {terminal_safe(', '.join(repo['plans']) or 'none')}")
    for plan in doc["plans"]:
        hooks = f", {plural(plan['hooks'], 'command')} before and after steps" if plan["hooks"] else ""
        print(f"plan {terminal_safe(plan['name'])} (version {plan['version']}): "
              f"{plural(len(plan['steps']), 'step')} ({terminal_safe(', '.join(plan['steps']))}), restores into "
              f"{terminal_safe(plan['target_base'])}{hooks}")
        for step in plan["details"]:
            into = f" and loads its dump into {terminal_safe(step['database'])}" if step["database"] else ""
            print(f"  step {terminal_safe(step['name'])}: restores {terminal_safe(step['config'])} into "
                  f"{terminal_safe(step['target'])}{into}")
            for phase in ("before", "after"):
                for command in step[phase]:
                    print(f"    runs {phase}: {terminal_safe(command)}")
        for name in plan["missing_configs"]:
            print(f"  needs configuration {terminal_safe(name)}, which none of these repositories holds")
    if not doc["plans"]:
        print("no DR plan is stored in these repositories")
    source = f"--kit {kit_file}" if kit_file else "--repo URL"
    print(f"to recover: strongroom dr recover {source} --plan NAME [--target-base DIR] [--test]")


COMMANDS = [dr_kit, dr_recover]
