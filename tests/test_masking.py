"""`ClientMasking` against frames serialized by websockets, split at arbitrary points."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from wsreplay.masking import ClientMasking

# Data payloads around the 7-bit, 16-bit and 64-bit length encodings; control payloads up to 125 bytes.
data_frames = st.tuples(
    st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT]),
    st.one_of(st.binary(max_size=130), st.integers(min_value=65_530, max_value=65_540).map(bytes)),
)
control_frames = st.tuples(st.sampled_from([Opcode.PING, Opcode.PONG]), st.binary(max_size=125))
frames = st.one_of(data_frames, control_frames)


def serialized(opcode: Opcode, payload: bytes, masked: bool) -> bytes:
    return Frame(opcode, payload).serialize(mask=masked)


def feed_in_chunks(stream: bytes, cuts: list[int]) -> int | None:
    """Feed `stream` cut at `cuts`; return the stream offset reported for an unmasked frame."""
    masking = ClientMasking()
    start = 0
    for end in sorted({*cuts, len(stream)}):
        found = masking.feed(stream[start:end])
        if found is not None:
            return start + found
        start = end
    return None


@given(st.lists(frames, max_size=6), st.lists(st.integers(min_value=0, max_value=200_000), max_size=8))
def test_masked_frames_pass_however_the_bytes_are_split(sent: list[tuple[Opcode, bytes]], cuts: list[int]) -> None:
    stream = b"".join(serialized(opcode, payload, masked=True) for opcode, payload in sent)
    assert feed_in_chunks(stream, [cut for cut in cuts if cut < len(stream)]) is None


@given(
    st.lists(frames, max_size=4),
    frames,
    st.lists(frames, max_size=2),
    st.lists(st.integers(min_value=0, max_value=200_000), max_size=8),
)
def test_the_first_unmasked_frame_is_found_where_it_starts(
    before: list[tuple[Opcode, bytes]],
    unmasked: tuple[Opcode, bytes],
    after: list[tuple[Opcode, bytes]],
    cuts: list[int],
) -> None:
    head = b"".join(serialized(opcode, payload, masked=True) for opcode, payload in before)
    stream = head + serialized(*unmasked, masked=False)
    stream += b"".join(serialized(opcode, payload, masked=False) for opcode, payload in after)
    cuts = [cut for cut in cuts if cut < len(stream)]
    found = feed_in_chunks(stream, cuts)
    # When the frame's first byte came with an earlier chunk, the offset is the start of the chunk
    # that holds its second byte (the MASK bit).
    assert found == (len(head) + 1 if len(head) + 1 in cuts else len(head))


def test_a_64_bit_length_is_skipped_without_reading_it() -> None:
    masking = ClientMasking()
    header = bytes([0x82, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + b"mask"
    assert masking.feed(header) is None
    assert masking.feed(b"\x00" * 1000) is None, "payload bytes are not read as headers"
