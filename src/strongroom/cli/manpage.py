"""Man pages (roff, section 1) written from click's command tree: one page for
`strongroom` and one for every command and subcommand that help lists."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import click


def escape(text: str) -> str:
    """Text as roff prints it: backslashes and hyphens literal, no line read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    # click's "\b" marks a paragraph it must not rewrap; roff rewraps anyway.
    lines = [line for line in text.splitlines() if line.strip() != "\b"]
    return [" ".join(p.split()) for p in "\n".join(lines).split("\n\n") if p.strip()]


def walk(command: click.Command, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    """`command` and, for a group, every visible subcommand below it."""
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from walk(sub, click.Context(sub, info_name=name, parent=ctx))


def page_name(ctx: click.Context) -> str:
    return ctx.command_path.replace(" ", "-")


def render(command: click.Command, ctx: click.Context, version: str, date: datetime.date) -> str:
    name = page_name(ctx)
    out = [f'.TH "{escape(name.upper())}" "1" "{date.isoformat()}" "strongroom {escape(version)}" '
           '"strongroom manual"', ".nh",  # no hyphenation: an option or a URL is copied as printed
           ".SH NAME", f"{escape(name)} \\- {escape(command.get_short_help_str(limit=200))}",
           ".SH SYNOPSIS", f".B {escape(ctx.command_path)}", escape(" ".join(command.collect_usage_pieces(ctx)))]
    paragraphs = _paragraphs(command.help or "")
    if paragraphs:
        out.append(".SH DESCRIPTION")
        for i, paragraph in enumerate(paragraphs):
            out += ([] if i == 0 else [".PP"]) + [escape(paragraph)]
    records = [r for r in (p.get_help_record(ctx) for p in command.get_params(ctx)) if r]
    if records:
        out.append(".SH OPTIONS")
        for names, text in records:
            out += [".TP", f".B {escape(names)}", escape(" ".join(text.split())) if text else ""]
    subcommands = []
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                subcommands.append((sub_name, sub))
    if subcommands:
        out.append(".SH COMMANDS")
        for sub_name, sub in subcommands:
            out += [".TP", f".B {escape(sub_name)}", escape(sub.get_short_help_str(limit=200)),
                    f"See \\fB{escape(name)}\\-{escape(sub_name)}\\fR(1)."]
    if ctx.parent is not None:
        out += [".SH SEE ALSO", f"\\fB{escape(page_name(ctx.parent))}\\fR(1)"]
    return "\n".join(line for line in out if line != "") + "\n"


def write_pages(root: click.Command, prog_name: str, directory: str, version: str,
                date: datetime.date) -> list[str]:
    """Write NAME.1 for every page into `directory`; the file names written, in order."""
    import os
    os.makedirs(directory, exist_ok=True)
    written = []
    with click.Context(root, info_name=prog_name) as ctx:
        for command, command_ctx in walk(root, ctx):
            path = os.path.join(directory, page_name(command_ctx) + ".1")
            with open(path, "w", encoding="utf-8") as f:
                f.write(render(command, command_ctx, version, date))
            written.append(path)
    return written
