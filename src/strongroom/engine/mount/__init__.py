"""`strongroom mount`: the repository's snapshots as a read-only file system.

views.py names the folders above the snapshots, contents.py reads trees and
file bytes on demand with bounded caches, fs.py answers libfuse.
"""
