"""What the node makes of inbox answers an independent coordinator might send."""
import pytest

from node.daemon.inbox import MAX_PROMPT_BYTES, InboxRequest, Malformed, parse_inbox

GOOD = {"id": "req_1", "model": "llama3.2", "prompt": "hi", "system": None,
        "options": {"temperature": 0.7, "num_predict": 256}, "deadlineMs": 1764081294567}


def test_a_protocol_request_is_read_exactly():
    req = parse_inbox({"request": GOOD, "extra": 1})
    assert req == InboxRequest(id="req_1", model="llama3.2", prompt="hi",
                               deadline_ms=1764081294567, system=None,
                               options={"temperature": 0.7, "num_predict": 256})


@pytest.mark.parametrize("body", [{}, {"request": None}, {"other": "field"}])
def test_no_request_means_nothing_waiting(body):
    assert parse_inbox(body) is None


def test_null_or_missing_options_and_system_are_accepted():
    req = parse_inbox({"request": {**GOOD, "options": None, "extra": "ignored"}})
    assert req.options == {} and req.system is None
    slim = {k: v for k, v in GOOD.items() if k not in ("options", "system")}
    assert parse_inbox({"request": slim}).options == {}


@pytest.mark.parametrize("change,reportable", [
    ({"model": 3}, True), ({"prompt": None}, True), ({"deadlineMs": "soon"}, True),
    ({"deadlineMs": 2**70}, True), ({"deadlineMs": -1}, True),
    ({"options": {"seed": 2**70}}, True), ({"options": []}, True),
    ({"prompt": "bad \ud800 surrogate"}, True), ({"system": "\udfff"}, True),
    ({"prompt": "x" * (MAX_PROMPT_BYTES + 1)}, True),
    ({"id": "\ud800"}, False), ({"id": ""}, False), ({"id": "x" * 201}, False), ({"id": 7}, False),
])
def test_requests_that_cannot_be_served_are_refused_with_a_reason(change, reportable):
    result = parse_inbox({"request": {**GOOD, **change}})
    assert isinstance(result, Malformed) and result.reason
    assert result.request_id == ("req_1" if reportable else None)
