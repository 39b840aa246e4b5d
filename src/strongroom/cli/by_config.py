"""`--config NAME` on the repository commands.

`backup`, `snapshots`, `restore`, `check`, `forget` and `stats` work on a
repository given by -r/--repo, or on the repository of a managed
configuration named by --config (its sources, password, retention and job
history in the catalog). This module adds the option, the catalog options
that go with it, and refuses the repository options that mean nothing for
a configuration; cmd_managed.py does the work. It imports nothing heavy:
the commands' modules use it at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import click
from click.core import ParameterSource

from strongroom.errors import UsageError

# Shared by every command that takes --config: they mean the same with a
# configuration as with a repository.
ALWAYS_ALLOWED = frozenset({"config_name", "all_configs", "catalog", "json_output", "debug", "cache_dir", "quiet",
                            "verbose", "log_file"})

BOTH_GIVEN = "give --config NAME or -r/--repo, not both: a configuration names its own repository"


@dataclass(frozen=True)
class ByConfig:
    """The configuration a command was asked to work on (`name` is None for
    --configs: all of them), and the values of its managed-only options."""
    name: str | None
    catalog: str | None
    options: Mapping[str, object] = field(default_factory=dict)

    def manage(self, common):
        """The catalog commands' settings, from the repository command's own."""
        from strongroom.cli.cmd_manage import Manage
        return Manage(catalog=self.catalog, json=common.json, debug=common.debug, cache_dir=common.cache_dir,
                      quiet=common.quiet, verbose=common.verbose)


def config_option(*, allowed: Iterable[str] = (), managed: Iterable = (), refusals: Mapping[str, str] | None = None,
                  all_configs: bool = False):
    """Add --config NAME (and --catalog) to a repository command.

    The command gets a `config` argument: None for a repository, else a
    `ByConfig`. With --config, only the parameters named in `allowed` may be
    given on the command line; another is a usage error (the message in
    `refusals` for that parameter, or a general one). `managed` are click
    options that mean something only with --config; their values go into
    `ByConfig.options`, not to the command. `all_configs` adds --configs.
    """
    managed = list(managed)
    managed_names = _names(managed)
    permitted = ALWAYS_ALLOWED | set(allowed)
    refusals = dict(refusals or {})

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, config_name, catalog, **kwargs):
            managed_values = {name: kwargs.pop(name) for name in managed_names}
            every = kwargs.pop("all_configs", False)
            given = _given_on_command_line()
            if config_name is None and not every:
                stray = [p for p in given if p.name in managed_values or p.name == "catalog"]
                if stray:
                    raise UsageError(f"{_flag(stray[0])} goes with --config NAME")
                return func(*args, config=None, **kwargs)
            if config_name is not None and every:
                raise UsageError("give --config NAME or --configs, not both")
            for p in given:
                if p.name == "repo":
                    raise UsageError(BOTH_GIVEN)
                if p.name not in permitted and p.name not in managed_values:
                    raise UsageError(refusals.get(p.name) or f"{_flag(p)} does not go with --config: the "
                                     f"configuration has its own (see `strongroom config show NAME`)")
            from strongroom.cli.options import from_command_line  # --catalog before the command
            catalog = from_command_line({"catalog": catalog})["catalog"]
            return func(*args, config=ByConfig(config_name, catalog, managed_values), **kwargs)

        # Applied last, shown first: --config, then --configs and --catalog, then the managed options.
        for option in reversed(managed):
            wrapper = option(wrapper)
        wrapper = click.option("--catalog", envvar="STRONGROOM_CATALOG", type=click.Path(dir_okay=False),
                               help="With --config: the catalog file (default: STRONGROOM_CATALOG, "
                                    "else ~/.local/share/strongroom/catalog.db).")(wrapper)
        if all_configs:
            wrapper = click.option("--configs", "all_configs", is_flag=True,
                                   help="Work on every managed configuration in the catalog.")(wrapper)
        return click.option("--config", "config_name", metavar="NAME",
                            help="Work on managed configuration NAME (from the catalog) instead of a "
                                 "repository.")(wrapper)
    return decorate


def _names(options: list) -> list[str]:
    """The parameter names the click option decorators in `options` declare."""
    @click.command()
    def probe(**_):
        pass
    for option in options:
        probe = option(probe)
    return [p.name for p in probe.params]


def _given_on_command_line() -> list[click.Parameter]:
    """The command's parameters given on the command line, after the command
    or (the global options) before it."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    before = set() if root is ctx else {
        p.name for p in root.command.params if root.get_parameter_source(p.name) is ParameterSource.COMMANDLINE}
    return [p for p in ctx.command.params
            if ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE or p.name in before]



def _flag(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return param.human_readable_name
    return max(param.opts, key=len)
