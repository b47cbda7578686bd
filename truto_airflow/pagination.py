"""The one cursor walker behind every Truto list read (sync and async alike).

Truto's list envelope is ``{"result": [...] | {key: item}, "next_cursor": str | null}``. A walk
must end: a server that hands back a cursor it gave before (``A -> B -> A``, not only an
immediate repeat) would loop forever, and one that invents fresh cursors forever would never
stop, so :class:`CursorWalk` remembers every cursor of the walk and counts pages. Either case,
and a page that is not a list envelope, is a :class:`~truto_airflow.exceptions.TrutoPaginationError`
naming the path, the page and the cure; nothing is guessed.

The walk is sans-I/O (it builds each page's query and judges each page's body), so the hook's
sync and async generators share it and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from truto_airflow.exceptions import TrutoInputError, TrutoPaginationError, truncate

__all__ = ["DEFAULT_MAX_PAGES", "CursorWalk"]

#: Pages one walk may read before it is refused: 1,000,000 rows at Truto's 100 per page. A
#: bound, not a budget; pass ``max_pages`` to read more.
DEFAULT_MAX_PAGES = 10_000


class CursorWalk:
    """The state of one cursor walk: which page is next, and whether the walk may go on.

    Use it as ``while (query := walk.next_query()) is not None: items = walk.take(get(query))``.

    :param what: ``"GET /path"`` for error messages.
    :param query: the first page's query (a ``next_cursor`` in it is the starting point).
    :param max_pages: pages this walk may read; one more is a :class:`TrutoPaginationError`.
    """

    def __init__(
        self, what: str, query: Mapping[str, Any], *, max_pages: int = DEFAULT_MAX_PAGES
    ) -> None:
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
            raise TrutoInputError(f"max_pages must be a whole number >= 1, got {max_pages!r}")
        self.what = what
        self.max_pages = max_pages
        self.pages = 0
        self._query = dict(query)
        start = self._query.get("next_cursor")
        self._cursor: str | None = str(start) if start else None
        #: cursor -> the page number that handed it out (0 = the caller's starting cursor).
        self._seen: dict[str, int] = {} if self._cursor is None else {self._cursor: 0}
        self._done = False
        #: Why the walk cannot go on; raised when the next page is asked for, so the items of
        #: the page that revealed it are still delivered.
        self._stop: TrutoPaginationError | None = None

    @property
    def done(self) -> bool:
        """Whether the last page said there is no next one."""
        return self._done

    def next_query(self) -> dict[str, Any] | None:
        """The next page's query, ``None`` when the walk is over; refuses a page past the cap."""
        if self._done:
            return None
        if self._stop is not None:
            raise self._stop
        if self.pages >= self.max_pages:
            raise TrutoPaginationError(
                f"{self.what} still had a next_cursor after max_pages={self.max_pages} pages; "
                "stopped instead of reading without end. Narrow the query, or pass a larger "
                "max_pages if the list really is that long"
            )
        query = dict(self._query)
        if self._cursor is not None:
            query["next_cursor"] = self._cursor
        return query

    def take(self, page: Any) -> list[dict[str, Any]]:
        """The items of the page just read (its ``result``), and the cursor to the next one.

        A page that is not a list envelope raises at once; a bad or repeated ``next_cursor``
        raises at the following :meth:`next_query`, after this page's items were delivered.
        """
        self.pages += 1
        where = f"{self.what} page {self.pages}"
        if not isinstance(page, dict):
            raise TrutoPaginationError(
                f"{where} is not a list envelope (got {type(page).__name__}: "
                f"{truncate(str(page), 80)})"
            )
        if "result" not in page:
            # Not "no items": a body without the envelope (an empty 200 reads as {}, a
            # 'results' array) would otherwise end the walk silently with rows unread.
            raise TrutoPaginationError(
                f"{where} has no 'result' (keys: {truncate(', '.join(map(str, page)), 80)}); "
                "not a list envelope, so the list cannot be read"
            )
        result = page["result"]
        if result is None:
            items: list[Any] = []
        elif isinstance(result, dict):  # truto_key_by: {key: item}
            items = list(result.values())
        elif isinstance(result, list):
            items = result
        else:
            raise TrutoPaginationError(
                f"{where} has a 'result' of type {type(result).__name__}, not a list"
            )
        for item in items:
            if not isinstance(item, dict):
                raise TrutoPaginationError(
                    f"{where} has an entry that is not an object: {truncate(repr(item), 80)}"
                )
        self._advance(page.get("next_cursor"), where)
        return items

    def _advance(self, raw: Any, where: str) -> None:
        if raw is None or raw == "":
            self._done = True
            return
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            self._stop = TrutoPaginationError(
                f"{where} has a next_cursor of type {type(raw).__name__}, not a string"
            )
            return
        cursor = str(raw)
        first = self._seen.get(cursor)
        if first is not None:
            origin = "the starting cursor" if first == 0 else f"the cursor of page {first}"
            self._stop = TrutoPaginationError(
                f"{where} returned next_cursor {truncate(cursor, 40)!r}, {origin} again: a "
                f"cycle, so the walk would never end (stopped after {self.pages} pages). "
                "This is a server-side paging fault; report it to Truto"
            )
            return
        self._seen[cursor] = self.pages
        self._cursor = cursor
