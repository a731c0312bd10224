"""The MQTT codec of the publishing client (sinks/mqtt/wire.py), checked
against paho's own packet reader and writer (an independent MQTT
implementation, a test dependency) and fed byte by byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smemet.gateway.sinks.mqtt import wire


def _remaining(packet: bytes) -> tuple[int, int, bytes]:
    """(type, flags, body) of one packet, by the spec's varint (not our decoder)."""
    length, shift, i = 0, 0, 1
    while True:
        byte = packet[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
    assert len(packet) == i + length
    return packet[0] >> 4, packet[0] & 0x0F, packet[i:]


@given(st.integers(0, 268_435_455))
def test_varint_is_the_specs_variable_byte_integer(n):
    encoded = wire.varint(n)
    assert len(encoded) == (1 if n < 128 else 2 if n < 16384 else 3 if n < 2_097_152 else 4)
    value, at = wire._read_varint(encoded, 0)
    assert (value, at) == (n, len(encoded))


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
def test_connect_carries_will_login_and_keepalive(version):
    will = wire.Will("p/status", b'{"state":"offline"}', qos=1, retain=True)
    kind, flags, body = _remaining(wire.connect("gw-1", 30, version, username="u", password="pw", will=will))
    assert (kind, flags) == (wire.CONNECT, 0)
    assert body[:6] == b"\x00\x04MQTT" and body[6] == version
    assert body[7] == 0x80 | 0x40 | 0x20 | (1 << 3) | 0x04 | 0x02  # user, password, will retain, QoS 1, will, clean
    assert struct.unpack(">H", body[8:10])[0] == 30
    rest = body[10:] if version == wire.V311 else body[11:]  # MQTT 5: an empty property block first
    assert rest[:2] == b"\x00\x04" and rest[2:6] == b"gw-1"


def test_publish_properties_decode_with_paho():
    block = wire.publish_properties(content_type="application/senml+json", payload_format=1, message_expiry=3600,
                                    user=(("chain", "7:ab"),))
    length, at = wire._read_varint(block, 0)
    props = Properties(PacketTypes.PUBLISH)
    props.unpack(block)
    assert props.ContentType == "application/senml+json" and props.PayloadFormatIndicator == 1
    assert props.MessageExpiryInterval == 3600 and props.UserProperty == [("chain", "7:ab")]
    assert at + length == len(block)


@given(st.text(min_size=1, max_size=30).filter(lambda t: "\0" not in t), st.binary(max_size=300),
       st.integers(1, 65535), st.booleans())
def test_publish_layout(topic, payload, packet_id, retain):
    props = wire.publish_properties(content_type="application/json")
    kind, flags, body = _remaining(wire.publish(wire.text(topic), payload, packet_id, 1, retain, False, props))
    assert kind == wire.PUBLISH and flags == (0x02 | (0x01 if retain else 0))
    n = struct.unpack(">H", body[:2])[0]
    assert body[2:2 + n].decode() == topic
    assert struct.unpack(">H", body[2 + n:4 + n])[0] == packet_id
    assert body[4 + n:4 + n + len(props)] == props and body[4 + n + len(props):] == payload


@given(st.text(min_size=1, max_size=30).filter(lambda t: "\0" not in t), st.binary(max_size=20000),
       st.integers(1, 65535), st.booleans(), st.booleans())
def test_publish_into_appends_the_same_bytes_as_publish(topic, payload, packet_id, retain, v5):
    props = wire.publish_properties(content_type="application/json") if v5 else None
    out = bytearray(b"before")
    wire.publish_into(out, wire.text(topic), payload, packet_id, retain, props)
    assert bytes(out) == b"before" + wire.publish(wire.text(topic), payload, packet_id, 1, retain, False, props)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 65535), min_size=1, max_size=40), st.data())
def test_decoder_finds_every_puback_however_the_bytes_are_cut(ids, data):
    stream = b"".join(struct.pack(">BBH", 0x40, 2, i) for i in ids) + bytes([0x40, 4]) + struct.pack(">HB", 9, 0x87) + b"\x00"
    decoder = wire.Decoder(wire.V5)
    packets = []
    at = 0
    while at < len(stream):
        step = data.draw(st.integers(1, 7))
        packets += decoder.feed(stream[at:at + step])
        at += step
    assert [p.packet_id for p in packets] == ids + [9]
    assert packets[-1].code == 0x87 and all(p.code == 0 for p in packets[:-1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 65535), min_size=1, max_size=40), st.data())
def test_feed_split_gives_plain_puback_ids_apart_and_every_other_packet(ids, data):
    """The fast path must find the same acknowledgements as ``feed``, however
    the stream is cut, and leave failed PUBACKs and other packets as packets."""
    failed = bytes([0x40, 3]) + struct.pack(">HB", 9, 0x87)
    long_form_success = bytes([0x40, 3]) + struct.pack(">HB", 11, 0)
    stream = b"".join(struct.pack(">BBH", 0x40, 2, i) for i in ids) + failed + long_form_success \
        + bytes([0xD0, 0]) + struct.pack(">BBH", 0x40, 2, 12)  # ... PINGRESP, one more PUBACK
    decoder = wire.Decoder(wire.V5)
    acked, packets = [], []
    at = 0
    while at < len(stream):
        step = data.draw(st.integers(1, 7))
        some_acked, some_packets = decoder.feed_split(stream[at:at + step])
        acked += some_acked
        packets += some_packets
        at += step
    everything = wire.Decoder(wire.V5).feed(stream)
    plain = [p.packet_id for p in everything if type(p) is wire.Puback and p.code == 0]
    assert sorted(acked + [p.packet_id for p in packets if type(p) is wire.Puback and p.code == 0]) == sorted(plain)
    assert acked[:len(ids)] == ids and 12 in acked
    assert [p for p in packets if type(p) is wire.Puback and p.code] == [wire.Puback(9, 0x87)]
    assert any(type(p) is not wire.Puback for p in packets)  # the PINGRESP


def test_connack_receive_maximum_and_disconnect_reason():
    decoder = wire.Decoder(wire.V5)
    props = bytes([wire.P_RECEIVE_MAXIMUM, 0, 20, wire.P_REASON_STRING]) + wire.text("ok")
    connack = bytes([0x20]) + wire.varint(2 + len(wire.varint(len(props))) + len(props)) + b"\x00\x00" \
        + wire.varint(len(props)) + props
    disconnect = bytes([0xE0, 1, 0x8E])
    packets = decoder.feed(connack + disconnect)
    assert packets[0] == wire.Connack(0, False, 20, None, "ok")
    assert packets[1] == wire.Disconnect(0x8E) and wire.reason_text(wire.V5, 0x8E) == "session taken over"
    with pytest.raises(wire.WireError, match="unexpected packet type"):
        wire.Decoder(wire.V5).feed(bytes([0xC0, 0]))  # PINGREQ: only a broker receives one
