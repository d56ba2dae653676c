"""The execution page's output feed (web/present.OutputFeed): StepOutput
entries in, the parts dashboard.js applies out."""

from __future__ import annotations

import json

from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server.web.present import OUTPUT_TAIL_CHARS, OutputFeed, output_json

TAIL = OUTPUT_TAIL_CHARS


def chunk(offset: str, step: str, attempt: int, text: str) -> pb.StepOutput:
    out = pb.StepOutput(offset=offset, step=step, attempt=attempt)
    out.chunk.text = text
    return out


def rewind(offset: str, step: str, attempt: int) -> pb.StepOutput:
    out = pb.StepOutput(offset=offset, step=step, attempt=attempt)
    out.rewind.SetInParent()
    return out


def test_a_batch_merges_each_epochs_text_and_keeps_rewinds_in_place() -> None:
    feed = OutputFeed("tx1")
    parts = feed.parts([
        chunk("1-0", "a", 1, "one "),
        chunk("1-1", "b", 1, "bee "),
        chunk("1-2", "a", 1, "two"),
        rewind("1-3", "a", 2),
        chunk("1-4", "a", 2, "again"),
    ])  # fmt: skip
    assert parts == [
        {"type": "text", "step": "a", "compensation": False, "attempt": 1, "text": "one two"},
        {"type": "text", "step": "b", "compensation": False, "attempt": 1, "text": "bee "},
        {"type": "rewind", "step": "a", "compensation": False, "attempt": 2},
        {"type": "text", "step": "a", "compensation": False, "attempt": 2, "text": "again"},
    ]


def test_an_epoch_over_twice_the_tail_is_cut_to_its_end_with_the_url_of_the_whole() -> None:
    feed = OutputFeed("tx1")
    first = feed.parts([chunk("5-0", "s", 1, "x" * (2 * TAIL - 1))])
    assert first[0]["text"] == "x" * (2 * TAIL - 1) and "cut" not in first[0]
    text = "".join(chr(ord("a") + i % 26) for i in range(50))
    cut = feed.parts([chunk("5-1", "s", 1, "y"), chunk("5-2", "s", 1, text)])[0]
    assert cut["cut"] is True
    assert cut["text"] == ("x" * (2 * TAIL - 1) + "y" + text)[-TAIL:]
    assert cut["expand"] == "/executions/tx1/output?step=s&attempt=1&compensation=0&until=5-2"
    # Appends again, until twice the tail once more.
    assert feed.parts([chunk("5-3", "s", 1, "z")])[0] == {
        "type": "text", "step": "s", "compensation": False, "attempt": 1, "text": "z"
    }  # fmt: skip


def test_a_gap_and_bytes_are_said_as_such() -> None:
    gap = pb.StepOutput(offset="9-0", sequence=40)
    gap.gap.dropped = 12
    data = pb.StepOutput(offset="9-1", step="s", attempt=1)
    data.chunk.binary = b"\x00\x01\x02"
    assert OutputFeed("t").parts([gap, data]) == [
        {"type": "gap", "dropped": 12},
        {"type": "text", "step": "s", "compensation": False, "attempt": 1,
         "text": "[3 bytes of binary output]\n"},
    ]  # fmt: skip


def test_the_json_escapes_markup_characters() -> None:
    parts = OutputFeed("t").parts([chunk("1-0", "s", 1, "<script>a && b</script>")])
    text = output_json(parts)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)[0]["text"] == "<script>a && b</script>"
