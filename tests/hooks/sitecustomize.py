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

# Tests of several processes on one repository (tests/fleet.py) need lock
# intervals of seconds, not minutes: STRONGROOM_TEST_LOCK_TIMING="REFRESH,LOST,
# STALE" sets the default LockTiming of a process the tests start. Production
# code has no such switch: every host of a real fleet keeps the same intervals,
# which the stale rule depends on.
import os as _os

_timing = _os.environ.get("STRONGROOM_TEST_LOCK_TIMING")
if _timing:
    from strongroom.repo import locks as _locks

    _refresh, _lost, _stale = (float(x) for x in _timing.split(","))
    _defaults = _locks.LockTiming.__init__.__defaults__  # refresh_every, lost_after, retry_pause, stale_after, clock
    _locks.LockTiming.__init__.__defaults__ = (_refresh, _lost, min(_defaults[2], _refresh), _stale, _defaults[4])
