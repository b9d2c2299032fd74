"""``GET /sse``'s query read without ``parse_qsl``'s unquoting where nothing needs it."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.http.stream_route import StreamQuery, query_pairs

# What a query string may hold once read as latin-1, weighted to its separators.
query_text = st.text(alphabet=st.sampled_from("ab=&%+;2F0c é\x00"), max_size=40)


@given(query_text)
@example("channel=echo&&channel=&last_event_id=a=b&token&=x")
@example("channel=a%2Bb&token=c+d")
def test_query_pairs_are_parse_qsl_with_blank_values(query: str) -> None:
    assert query_pairs(query) == parse_qsl(query, keep_blank_values=True)


def test_the_query_counts_each_single_valued_parameter() -> None:
    query = StreamQuery.parse(b"channel=echo&token=a&last_event_id=1&token=b&channel=x%20y")
    assert query.channels == ["echo", "x y"]
    assert query.token == "b"
    assert query.last_event_id == "1"
    assert dict(query.counts) == {"token": 2, "last_event_id": 1}
