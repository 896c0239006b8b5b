"""JSON exactly as etcdctl prints it: Go's encoding/json applied to etcd's generated structs.

Those structs tag every field ``json:"<proto name>,omitempty"``, so zero scalars, empty
lists and unset messages are left out, a set (even empty) message is ``{}``, bytes are
base64, enums are numbers, and 64-bit integers are plain numbers. A oneof is a Go interface
field without a tag: ``"Response":{"ResponsePut":{...}}``. Go also escapes ``<``, ``>`` and
``&`` in strings. Python dicts and lists pass through as objects and arrays, so callers
can build etcdctl's own wrapper structs (``{"Endpoint": ..., "Status": ...}``).
"""

from __future__ import annotations

import base64
import json

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_string(text: str) -> str:
    """A JSON string literal as Go's encoder writes it."""
    encoded = json.dumps(text, ensure_ascii=False)
    for char, escape in _GO_ESCAPES.items():
        encoded = encoded.replace(char, escape)
    return encoded


def go_name(proto_name: str) -> str:
    """The Go identifier protoc gives a oneof or its member: response_put -> ResponsePut."""
    return "".join(part[:1].upper() + part[1:] for part in proto_name.split("_"))


def _scalar(field: FieldDescriptor, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return go_string(base64.b64encode(value).decode())  # type: ignore[arg-type]
    return encode(value)


def _field_value(field: FieldDescriptor, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(value)  # type: ignore[arg-type]
    return _scalar(field, value)


def _message(message: Message) -> str:
    parts: list[str] = []
    done_oneofs: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None:  # (the schema uses no proto3 "optional" fields)
            if oneof.name in done_oneofs:
                continue
            done_oneofs.add(oneof.name)
            which = message.WhichOneof(oneof.name)
            if which is not None:
                member = message.DESCRIPTOR.fields_by_name[which]
                inner = _field_value(member, getattr(message, which))
                parts.append(f'"{go_name(oneof.name)}":{{"{go_name(which)}":{inner}}}')
            continue
        value = getattr(message, field.name)
        if field.is_repeated:
            if len(value):
                items = ",".join(_field_value(field, item) for item in value)
                parts.append(f"{go_string(field.name)}:[{items}]")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if message.HasField(field.name):
                parts.append(f"{go_string(field.name)}:{_message(value)}")
        elif value:
            parts.append(f"{go_string(field.name)}:{_scalar(field, value)}")
    return "{" + ",".join(parts) + "}"


def encode(value: object) -> str:
    """Encode a protobuf message, dict, list, str, bytes, bool, int or None like Go does."""
    if isinstance(value, Message):
        return _message(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_string(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, (bytes, bytearray)):
        return go_string(base64.b64encode(value).decode())
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
