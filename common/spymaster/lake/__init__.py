"""The lake: storage (:mod:`.store`), the commit protocol (:mod:`.manifests`) and every key (:mod:`.paths`).

``quarantine``, ``status`` and ``sql`` read the lake through these three.
"""

from spymaster.lake.lock import Lease, locked
from spymaster.lake.manifests import (
    Manifest,
    check_shrink,
    commit,
    committed_dates,
    discard,
    is_committed,
    new_run_id,
    read_committed,
    read_manifest,
    uncommit,
)
from spymaster.lake.store import Lake

__all__ = [
    "Lake",
    "Lease",
    "Manifest",
    "check_shrink",
    "commit",
    "committed_dates",
    "discard",
    "is_committed",
    "locked",
    "new_run_id",
    "read_committed",
    "read_manifest",
    "uncommit",
]
