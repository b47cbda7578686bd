"""Cursor pagination: one walker for the hook and the bulk data-safety list read.

Servers here are functions of the requested cursor, so any cursor graph (chains, A -> B -> A,
self loops, endless fresh cursors) can be served; a request budget turns a walker that loops
into a test failure instead of a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ACCOUNT_ID
from truto_airflow.exceptions import TrutoPaginationError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.retry import RetryPolicy

#: More requests than any walk in this file may need; a walker past it is looping.
BUDGET = 60


class CursorServer:
    """Serves ``GET /unified/crm/opportunities`` from a cursor graph ``{cursor: next_cursor}``.

    The start page is the ``None`` cursor; each page holds one item named after its cursor.
    """

    def __init__(self, graph: Mapping[str | None, str | None], *, keyed: bool = False) -> None:
        self.graph = dict(graph)
        self.keyed = keyed
        self.cursors: list[str | None] = []

    def page(self, cursor: str | None) -> dict[str, Any]:
        item = {"id": f"opp-{cursor or 'start'}"}
        result: Any = {item["id"]: item} if self.keyed else [item]
        return {"result": result, "next_cursor": self.graph.get(cursor)}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        cursor = request.url.params.get("next_cursor")
        self.cursors.append(cursor)
        assert len(self.cursors) <= BUDGET, "the walker is looping"
        return httpx2.Response(200, json=self.page(cursor))


def make_hook(server: Any) -> TrutoHook:
    return TrutoHook(
        transport=httpx2.MockTransport(server),
        async_transport=httpx2.MockTransport(server),
        retry_policy=RetryPolicy(max_retries=0),
    )


def expected_walk(graph: Mapping[str | None, str | None]) -> tuple[list[str | None], bool]:
    """The cursors a correct walker requests, and whether the graph loops."""
    seen: list[str | None] = [None]
    while (nxt := graph.get(seen[-1])) is not None:
        if nxt in seen:
            return seen, True
        seen.append(nxt)
    return seen, False


# A cursor graph over a few names: any shape (chains, cycles of any length, self loops).
graphs = st.dictionaries(
    st.sampled_from([None, "a", "b", "c", "d", "e"]),
    st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e"])),
)


@pytest.mark.usefixtures("truto_conn")
@given(graph=graphs)
def test_sync_walk_follows_every_page_once_or_names_the_cycle(
    graph: dict[str | None, str | None],
) -> None:
    server = CursorServer(graph)
    hook = make_hook(server)
    cursors, loops = expected_walk(graph)
    if loops:
        with pytest.raises(TrutoPaginationError, match="cycle"):
            list(hook.iter_opportunities())
    else:
        ids = [o["id"] for o in hook.iter_opportunities()]
        assert ids == [f"opp-{c or 'start'}" for c in cursors]
    assert server.cursors == cursors  # no page read twice, none skipped


@pytest.mark.usefixtures("truto_conn")
@given(graph=graphs, keyed=st.booleans())
def test_async_walk_matches_the_sync_walk(graph: dict[str | None, str | None], keyed: bool) -> None:
    server = CursorServer(graph, keyed=keyed)
    hook = make_hook(server)
    cursors, loops = expected_walk(graph)

    async def walk() -> list[str]:
        try:
            return [o["id"] async for o in hook.aiter_opportunities()]
        finally:
            await hook.aclose()

    if loops:
        with pytest.raises(TrutoPaginationError, match="cycle"):
            asyncio.run(walk())
    else:
        assert asyncio.run(walk()) == [f"opp-{c or 'start'}" for c in cursors]
    assert server.cursors == cursors


@pytest.mark.usefixtures("truto_conn")
def test_a_b_a_cycle_through_the_legacy_paginate_is_refused() -> None:
    server = CursorServer({None: "A", "A": "B", "B": "A"})
    hook = make_hook(server)
    with pytest.raises(TrutoPaginationError) as info:
        list(hook.paginate("/unified/crm/opportunities", {"integrated_account_id": ACCOUNT_ID}))
    assert "cycle" in str(info.value) and "'A'" in str(info.value)
    assert server.cursors == [None, "A", "B"]


@pytest.mark.usefixtures("truto_conn")
def test_endless_fresh_cursors_stop_at_the_page_cap() -> None:
    class Endless:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, request: httpx2.Request) -> httpx2.Response:
            self.calls += 1
            assert self.calls <= BUDGET, "no page cap"
            return httpx2.Response(
                200, json={"result": [{"id": str(self.calls)}], "next_cursor": f"c{self.calls}"}
            )

    server = Endless()
    hook = make_hook(server)
    got: list[str] = []
    with pytest.raises(TrutoPaginationError, match="max_pages=7"):
        got.extend(opp["id"] for opp in hook.iter_opportunities(max_pages=7))
    assert server.calls == 7 and len(got) == 7


@pytest.mark.usefixtures("truto_conn")
def test_exactly_max_pages_pages_is_fine() -> None:
    server = CursorServer({None: "a", "a": "b"})
    assert len(list(make_hook(server).iter_opportunities(max_pages=3))) == 3


@pytest.mark.usefixtures("truto_conn")
def test_empty_page_with_a_cursor_is_followed_not_taken_as_the_end() -> None:
    pages = {
        None: {"result": [], "next_cursor": "a"},
        "a": {"result": [{"id": "1"}], "next_cursor": None},
    }

    def server(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=pages[request.url.params.get("next_cursor")])

    assert [o["id"] for o in make_hook(server).iter_opportunities()] == ["1"]


@pytest.mark.usefixtures("truto_conn")
def test_limit_stops_without_reading_further_pages() -> None:
    server = CursorServer({None: "a", "a": "b", "b": "c", "c": None})
    hook = make_hook(server)
    ids = [o["id"] for o in hook.iter_opportunities(limit=2, page_size=1)]
    assert ids == ["opp-start", "opp-a"]
    assert server.cursors == [None, "a"]


@pytest.mark.usefixtures("truto_conn")
def test_query_options_reach_every_page() -> None:
    server = CursorServer({None: "a"})
    seen: list[httpx2.QueryParams] = []

    def spy(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.params)
        return server(request)

    list(
        make_hook(spy).iter_opportunities(
            page_size=50, ignore_remote_data=True, params={"sort_by": "name"}
        )
    )
    assert len(seen) == 2
    for params in seen:
        assert params["integrated_account_id"] == ACCOUNT_ID
        assert params["limit"] == "50"
        assert params["truto_ignore_remote_data"] == "true"
        assert params["sort_by"] == "name"


@pytest.mark.usefixtures("truto_conn")
@pytest.mark.parametrize(
    "page",
    [
        ["not", "an", "envelope"],
        "<html>login</html>",
        {"result": "oops", "next_cursor": None},
        {"result": [1, 2], "next_cursor": None},
        {"result": [{"id": "1"}], "next_cursor": {"nested": True}},
        # audit: no 'result' at all is not an empty page (Truto's docs name the integrated
        # accounts array 'results' on one page; an empty 200 decodes to {})
        {"results": [{"id": "1"}], "next_cursor": None},
        {},
    ],
)
def test_a_page_that_is_not_a_list_envelope_is_a_typed_error(page: Any) -> None:
    def server(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=page)

    with pytest.raises(TrutoPaginationError):
        list(make_hook(server).iter_opportunities())


@pytest.mark.usefixtures("truto_conn")
def test_max_pages_must_be_positive() -> None:
    from truto_airflow.exceptions import TrutoInputError

    with pytest.raises(TrutoInputError, match="max_pages"):
        list(make_hook(CursorServer({})).iter_opportunities(max_pages=0))


@pytest.mark.usefixtures("truto_conn")
def test_bulk_current_state_list_read_survives_a_cycle_and_reads_the_rest_by_get() -> None:
    from truto_airflow.bulk.safety import CurrentState

    wanted = {f"opp-{c}" for c in ("start", "A", "B", "Z")}
    server = CursorServer({None: "A", "A": "B", "B": "A"}, keyed=True)
    gets: list[str] = []

    def route(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/unified/crm/opportunities":
            assert request.url.params["truto_key_by"] == "id"
            return server(request)
        ident = request.url.path.rsplit("/", 1)[1]
        gets.append(ident)
        return httpx2.Response(200, json={"id": ident, "read": "get"})

    hook = make_hook(route)
    state = CurrentState(hook, {ACCOUNT_ID: wanted}, list_threshold=2)

    async def read_all() -> dict[str, dict[str, Any]]:
        try:
            return {i: await state.get(ACCOUNT_ID, i) for i in sorted(wanted)}
        finally:
            await hook.aclose()

    got = asyncio.run(read_all())
    assert server.cursors == [None, "A", "B"]  # the cycle ended the list read
    assert gets == ["opp-Z"]  # only the row the list never delivered
    assert got["opp-A"] == {"id": "opp-A"} and got["opp-Z"]["read"] == "get"
