"""Configuration as a file: strongroom.toml declares clients, configurations,
notification channels and DR plans; `apply_file` makes the catalog match it,
`export_text` writes the catalog as such a file."""

from strongroom.configfile.apply import ApplyReport, Change, apply_file
from strongroom.configfile.export import export_text
from strongroom.configfile.locate import locate

__all__ = ["ApplyReport", "Change", "apply_file", "export_text", "locate"]
