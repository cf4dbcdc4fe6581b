"""Fan-out over shard groups and their copies: deadlines, retries, exact merge, coverage.

Plain asyncio, no Ray: a copy is any object with ``async call(method, *args)``. Reads go
to one copy of each group, with a deadline per attempt; a copy that fails or is late is
set aside for ``down_s`` and the next copy is asked. Domain errors (a bad argument, a
missing collection) are answers, not failures: they are raised at once, never retried.
Writes go to every copy of a group and succeed only if all of them do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clipsearch import errors
from clipsearch.errors import ClipsearchError, UnavailableError
from index_service.collection import shard_of, top_hits
from index_service.config import Hit

log = logging.getLogger(__name__)


class Copy(Protocol):
    async def call(self, method: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Failed:
    """A domain error raised in a copy, sent back as a value (exceptions lose fields in transit)."""

    kind: str
    message: str
    field: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def of(cls, error: ClipsearchError) -> Failed:
        return cls(type(error).__name__, error.message, error.field, error.retry_after_s)

    def error(self) -> ClipsearchError:
        kind = getattr(errors, self.kind, errors.InternalError)
        return kind(self.message, field=self.field, retry_after_s=self.retry_after_s)


@dataclass(frozen=True)
class RouterOptions:
    #: Seconds one copy has to answer a read before the next copy is asked.
    read_timeout_s: float = 2.0
    #: Seconds every copy of a group has to apply a write.
    write_timeout_s: float = 60.0
    #: Seconds a copy that failed is asked only after the others.
    down_s: float = 10.0


class GroupUnavailable(Exception):
    """No copy of a group answered (the reason of the last attempt is the message)."""


@dataclass
class SearchOutcome:
    results: list[list[Hit]]
    answered: int
    asked: int

    @property
    def coverage(self) -> float:
        return self.answered / self.asked


class ShardRouter:
    def __init__(self, groups: Sequence[Sequence[Copy]], options: RouterOptions = RouterOptions()):
        if not groups or any(not copies for copies in groups):
            raise ValueError("every shard group needs at least one copy")
        self.groups = [list(copies) for copies in groups]
        self.options = options
        self._down_until: dict[tuple[int, int], float] = {}
        self._next = [0] * len(self.groups)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def group_of(self, item_id: str) -> int:
        return shard_of(item_id, self.num_groups)

    # -- reads -------------------------------------------------------------------------------

    def _order(self, group: int) -> list[int]:
        """Copies of a group, round-robin, with those set aside lately at the end."""
        n = len(self.groups[group])
        start = self._next[group]
        self._next[group] = (start + 1) % n
        order = [(start + i) % n for i in range(n)]
        now = time.monotonic()
        return sorted(order, key=lambda c: self._down_until.get((group, c), 0.0) > now)

    async def read(self, group: int, method: str, *args: Any) -> Any:
        """One copy's answer; the next copy on failure or lateness; GroupUnavailable if none."""
        reason = "no copy was asked"
        for copy in self._order(group):
            try:
                answer = await asyncio.wait_for(
                    self.groups[group][copy].call(method, *args), self.options.read_timeout_s
                )
            except Exception as exc:  # a dead replica, a lost node, a late answer
                reason = f"copy {copy}: {type(exc).__name__}: {exc}".strip()
                log.warning("shard group %d %s failed on %s", group, method, reason)
                self._down_until[(group, copy)] = time.monotonic() + self.options.down_s
                continue
            self._down_until.pop((group, copy), None)
            if isinstance(answer, Failed):
                raise answer.error()
            return answer
        raise GroupUnavailable(reason)

    async def read_all(self, method: str, *args: Any) -> list[Any]:
        """Every group's answer, or its GroupUnavailable (domain errors raise, lowest group first)."""
        answers = await asyncio.gather(
            *(self.read(g, method, *args) for g in range(self.num_groups)), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, GroupUnavailable):
                raise answer
        return answers

    async def search(
        self, collection: str, queries: Any, k: int, offset: int, *options: Any
    ) -> SearchOutcome:
        """Each group's best ``k + offset`` candidates, merged by the collection's own rule."""
        parts, answered = await self.candidates(collection, queries, k + offset, *options)
        results = [top_hits(part, k, offset=offset) for part in parts]
        return SearchOutcome(results, answered, self.num_groups)

    async def candidates(
        self, collection: str, queries: Any, width: int, *options: Any
    ) -> tuple[list[list[Any]], int]:
        """(every answering group's best ``width`` candidates per query, unmerged; groups answering)."""
        answers = await self.read_all("search", collection, queries, width, *options)
        parts = [a for a in answers if not isinstance(a, GroupUnavailable)]
        return [[c for part in parts for c in part[q]] for q in range(len(queries))], len(parts)

    async def text_candidates(
        self, collection: str, queries: Any, query: Any, width: int, *options: Any
    ) -> tuple[list[list[Any]], int]:
        """(every answering group's keyword/hybrid pool per query, merged; groups answering)."""
        answers = await self.read_all("text_search", collection, queries, query, width, *options)
        parts = [a for a in answers if not isinstance(a, GroupUnavailable)]
        return [[c for part in parts for c in part[q]] for q in range(len(query.texts))], len(parts)

    # -- writes ------------------------------------------------------------------------------

    async def write(self, group: int, method: str, *args: Any) -> Any:
        """Applies on every copy of the group; the first copy's answer, or an error if any failed."""
        calls = [
            asyncio.wait_for(copy.call(method, *args), self.options.write_timeout_s)
            for copy in self.groups[group]
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        failed = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
        refused = [a for a in answers if isinstance(a, Failed)]
        if refused and len(refused) == len(answers):
            raise refused[0].error()
        if failed or refused:
            applied = len(answers) - len(failed) - len(refused)
            raise UnavailableError(
                f"shard group {group}: {method} applied on {applied} of {len(answers)} copies "
                f"({_reason(answers)}); the call is idempotent: retry it",
                retry_after_s=1.0,
            )
        return answers[0]

    async def write_groups(self, method: str, per_group: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        """Writes to several groups at once; if any fails, the error names the groups that applied."""
        groups = sorted(per_group)
        answers = await asyncio.gather(
            *(self.write(g, method, *per_group[g]) for g in groups), return_exceptions=True
        )
        errors_ = [(g, a) for g, a in zip(groups, answers, strict=True) if isinstance(a, BaseException)]
        if not errors_:
            return dict(zip(groups, answers, strict=True))
        applied = [g for g, a in zip(groups, answers, strict=True) if not isinstance(a, BaseException)]
        first = errors_[0][1]
        if not applied or not isinstance(first, ClipsearchError):
            raise first
        note = f" (applied on shard groups {applied} of {groups}: retry the whole call)"
        raise type(first)(
            first.message + note, field=first.field, retry_after_s=first.retry_after_s
        ) from first


def _reason(answers: list[Any]) -> str:
    for answer in answers:
        if isinstance(answer, Failed):
            return answer.message
        if isinstance(answer, BaseException):
            return f"{type(answer).__name__}: {answer}".strip()
    return "unknown"
