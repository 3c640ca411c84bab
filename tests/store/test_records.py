"""The 202's view, built from the new message itself, is the view a read of the stored hash gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smsgw.store.records import MessageView, NewMessage

numbers = st.lists(st.from_regex(r"9955\d{8}", fullmatch=True), min_size=1, max_size=4, unique=True)


@st.composite
def new_messages(draw: st.DrawFn) -> NewMessage:
    created = draw(st.integers(1_700_000_000_000, 1_900_000_000_000))
    send_at = draw(st.none() | st.integers(created + 1, created + 10**9))
    units = draw(st.lists(numbers, min_size=1, max_size=3))
    seen: set[str] = set()
    unique_units = []
    for unit in units:  # a number is in one unit of a message
        unique_units.append(tuple(n for n in dict.fromkeys(unit) if n not in seen))
        seen.update(unit)
    return NewMessage(
        id=draw(st.from_regex(r"msg_[a-z0-9]{18}", fullmatch=True)),
        client=draw(st.sampled_from(["shop", "auth"])),
        lane=draw(st.sampled_from(["otp", "transactional", "bulk"])),
        brand_id=draw(st.integers(1, 99)),
        text=draw(st.text(min_size=1, max_size=40)),
        sealed=draw(st.booleans()),
        reference=draw(st.none() | st.just("") | st.text(min_size=1, max_size=12)),
        segments=draw(st.integers(1, 10)),
        encoding=draw(st.sampled_from(["GSM-7", "UCS-2"])),
        created_ms=created,
        send_at_ms=send_at,
        expires_ms=(send_at or created) + draw(st.integers(1, 10**8)),
        stop_list=draw(st.booleans()),
        units=tuple(unit for unit in unique_units if unit) or (("995500000000",),),
    )


@given(new_messages())
def test_the_new_messages_view_is_the_stored_hashs_view(message: NewMessage) -> None:
    read_back = MessageView.parse(message.id, message.fields())
    assert message.view() == read_back
    assert message.view(message.fields()) == read_back
    assert message.view().resource() == read_back.resource()
