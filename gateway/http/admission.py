"""Admission of SSE streams: at most ``SSE_MAX_STREAMS`` open per process, and at
most ``SSE_MAX_STREAMS_PER_SUBJECT`` per token subject.

Not a check in the route function alone: the route returns before its stream
starts, so a burst of connections could all pass a check there before any of
them counted. Here the check and the count are one synchronous step
(``admit``), and the slot is given back when the response ends, however it
ends, and its socket is closed (``release``, called by ``StreamResponse``).
A subject's slot is taken once its token is verified (``admit_subject``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from gateway.errors import TooManyStreams, TooManyStreamsForSubject

RETRY_AFTER_SECONDS = 1


class StreamAdmission:
    """Counts streams admitted and not yet ended, and refuses those over the limits."""

    def __init__(self, *, limit: int, per_subject: int | None = None) -> None:
        self.limit = limit
        self.per_subject = per_subject
        self.open = 0
        self._subjects: Counter[str] = Counter()

    def admit(self) -> None:
        """Take a slot, or raise ``TooManyStreams`` (503 with ``Retry-After``)."""
        if self.open >= self.limit:
            raise TooManyStreams(
                f"this gateway holds its maximum of {self.limit} streams",
                "retry later or on another replica; operators raise SSE_MAX_STREAMS",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1

    def admit_subject(self, subject: str | None) -> Callable[[], None]:
        """Take a slot of ``subject`` (an admitted stream's token's ``sub``), or raise
        ``TooManyStreamsForSubject`` (429 with ``Retry-After``); returns what gives back
        both the stream's slot and the subject's."""
        limit = self.per_subject
        if limit is None or subject is None:
            return self.release
        if self._subjects[subject] >= limit:
            raise TooManyStreamsForSubject(
                f"this token's subject holds its maximum of {limit} streams on this gateway",
                "close a stream of this subject first (one stream can carry several "
                "channels); operators raise SSE_MAX_STREAMS_PER_SUBJECT",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._subjects[subject] += 1

        def release() -> None:
            self.open -= 1
            left = self._subjects[subject] - 1
            if left:
                self._subjects[subject] = left
            else:
                del self._subjects[subject]

        return release
