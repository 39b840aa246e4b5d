"""strongroom: deduplicated, compressed, encrypted and verifiable backups."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The Python API, imported on first use so the command line starts fast.
    from strongroom.services import api
    try:
        return getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module 'strongroom' has no attribute {name!r}") from None
