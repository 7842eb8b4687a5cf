"""One error root for Spymaster; subclasses carry the date / file / schema they concern."""

from __future__ import annotations

import datetime as dt


class SpymasterError(Exception):
    """Root of every error Spymaster raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        date: dt.date | None = None,
        schema: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.date = date
        self.schema = schema
        super().__init__(self._render())

    def _render(self) -> str:
        ctx = [
            f"{k}={v}"
            for k, v in (("file", self.file), ("date", self.date), ("schema", self.schema))
            if v is not None
        ]
        return f"{self.message} [{', '.join(ctx)}]" if ctx else self.message


class SettingsError(SpymasterError, ValueError):
    """A setting or option has a value Spymaster cannot use."""


class LakeError(SpymasterError):
    """The lake could not be read or written."""


class NotCommittedError(LakeError, LookupError):
    """A layer was asked for a date it has not committed."""


class LockedError(LakeError):
    """Another writer holds the lake lock (the vector table has one writer at a time)."""


class ShrinkError(SpymasterError):
    """A re-run would empty a non-empty partition or drop most of its rows; re-run with
    ``--allow-shrink`` if that is really meant."""


class BadInputError(SpymasterError, ValueError):
    """An input file cannot be used; it is quarantined with this message as its reason."""


class EmptyInputError(BadInputError):
    """The file has no bytes or no records."""


class CorruptInputError(BadInputError):
    """The file is truncated, not zstd / DBN, or fails to decode."""


class MislabelledInputError(BadInputError):
    """The file's own metadata disagrees with where it was placed (dataset, schema, date, product)."""


class ImplausibleInputError(BadInputError):
    """The file's records lie outside the session it claims, name unknown instruments, or carry
    too many implausible values (prices, sizes, duplicates) to be trusted."""


class UnknownDatasetError(BadInputError):
    """The file's dataset or schema is not one Spymaster knows how to place."""


class DownloadError(SpymasterError):
    """Fetching from Databento failed."""


class OutcomeLeakError(ValueError):
    """An input of the vector builder carried a column that is not a feature (e.g. an outcome)."""


class NotFoundError(SpymasterError, LookupError):
    """The thing asked about is not in the lake (a date, an episode, an active level)."""


class InvalidQueryError(SpymasterError, ValueError):
    """The query is well-formed JSON but cannot be answered as asked."""


class ReadOnlyQueryError(SpymasterError, ValueError):
    """``spymaster sql`` was given a statement that is not a single read-only query."""


class LiveSourceError(SpymasterError):
    """A live record source failed: authentication, a refused subscription, or a lost
    connection that its reconnect policy could not resume."""


class LiveNotStreamingError(NotFoundError):
    """The live stream asked for is not running (no live session, or another date)."""
