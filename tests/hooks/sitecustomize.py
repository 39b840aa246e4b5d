"""Loaded by every Python process the tests start (tests/conftest.py puts this
folder on PYTHONPATH): key derivation stays Argon2id, with a small memory cost,
so hundreds of opens stay fast. The parameters travel in each key file, so any
reader derives the same key; production code has no switch for this."""

try:
    from strongroom.repo import keys as _keys
except ImportError:  # a Python without strongroom, e.g. a server the tests start
    pass
else:
    _keys.DEFAULT_KDF = _keys.KdfParams(memory_kib=1024, iterations=1, lanes=1)
