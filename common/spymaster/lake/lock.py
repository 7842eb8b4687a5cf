"""The lake-wide writer lock: an ``flock`` on a local folder, a conditional-PUT lease on S3.

The vector table has one writer at a time; this makes that a rule the storage enforces rather
than an assumption about how commands are run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spymaster.errors import LakeError, LockedError
from spymaster.lake import paths
from spymaster.lake.store import Lake

LOCK_TTL_SECONDS = 300.0
"""A lease not renewed for this long is stale (its holder died) and may be broken."""
LOCK_WAIT_SECONDS = 900.0
"""How long a second writer waits for the lock before giving up with :class:`LockedError`."""


@dataclass
class Lease:
    """A held lake lock: ``owner`` is unique to this holder; ``etag`` is its last S3 write."""

    name: str
    owner: str
    key: str
    etag: str | None = None
    lost: bool = False


@contextlib.contextmanager
def locked(
    lake: Lake,
    name: str,
    *,
    ttl: float = LOCK_TTL_SECONDS,
    wait: float = LOCK_WAIT_SECONDS,
    poll: float = 0.2,
) -> Iterator[Lease]:
    """Hold the lake-wide lock ``name`` for the duration of the block.

    On a local folder the lock is an ``flock`` on ``_locks/<name>.lock``: the kernel releases it
    when the holder exits, however it dies. On S3 it is a lease object created with a
    conditional PUT (``If-None-Match: *``), renewed every ``ttl / 3`` with ``If-Match`` on its own
    ETag, and broken with ``If-Match`` on the stale ETag once ``ttl`` has passed unrenewed — so
    of two writers exactly one wins each step.

    Raises
    ------
    LockedError
        Another holder kept the lock for longer than ``wait`` seconds.
    """
    key = paths.lock_file(name)
    lease = Lease(name=name, owner=f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}", key=key)
    if lake.is_s3:
        with _s3_lease(lake, lease, ttl=ttl, wait=wait, poll=poll):
            yield lease
    else:
        with _local_lock(lake, lease, wait=wait, poll=poll):
            yield lease


@contextlib.contextmanager
def _local_lock(lake: Lake, lease: Lease, *, wait: float, poll: float) -> Iterator[None]:
    path = Path(lake.path(lease.key))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise LakeError(f"cannot create the lock file: {exc.strerror or exc}", file=lease.key) from exc
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(errors="replace").strip() or "another process"
                    raise LockedError(f"the {lease.name} lock is held by {holder}", file=lease.key) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, lease.owner.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _lease_body(lease: Lease, ttl: float) -> bytes:
    return json.dumps({"owner": lease.owner, "expires": time.time() + ttl}).encode()


@contextlib.contextmanager
def _s3_lease(lake: Lake, lease: Lease, *, ttl: float, wait: float, poll: float) -> Iterator[None]:
    from botocore.exceptions import ClientError  # boto3 is only needed on S3

    s3 = lake.s3_client()
    bucket, _, prefix = lake.root.partition("/")
    key = f"{prefix}/{lease.key}" if prefix else lease.key

    def code(exc: ClientError) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    deadline = time.monotonic() + wait
    while True:
        try:
            r = s3.put_object(Bucket=bucket, Key=key, Body=_lease_body(lease, ttl), IfNoneMatch="*")
            lease.etag = r["ETag"]
            break
        except ClientError as exc:
            if code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise LakeError(f"cannot take the {lease.name} lock: {exc}", file=lease.key) from exc
        try:
            held = s3.get_object(Bucket=bucket, Key=key)
            body = json.loads(held["Body"].read())
            if float(body.get("expires", 0)) < time.time():  # stale: its holder stopped renewing
                r = s3.put_object(Bucket=bucket, Key=key, Body=_lease_body(lease, ttl), IfMatch=held["ETag"])
                lease.etag = r["ETag"]
                break
        except ClientError as exc:
            if code(exc) not in ("NoSuchKey", "PreconditionFailed", "ConditionalRequestConflict", "404"):
                raise LakeError(f"cannot take the {lease.name} lock: {exc}", file=lease.key) from exc
            body = {}
        if time.monotonic() >= deadline:
            raise LockedError(f"the {lease.name} lock is held by {body.get('owner', '?')}", file=lease.key)
        time.sleep(poll)

    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                r = s3.put_object(Bucket=bucket, Key=key, Body=_lease_body(lease, ttl), IfMatch=lease.etag)
                lease.etag = r["ETag"]
            except ClientError:
                lease.lost = True
                return

    t = threading.Thread(target=renew, name=f"lease-{lease.name}", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        if not lease.lost:
            with contextlib.suppress(ClientError):
                held = s3.get_object(Bucket=bucket, Key=key)
                if json.loads(held["Body"].read()).get("owner") == lease.owner:
                    s3.delete_object(Bucket=bucket, Key=key)
