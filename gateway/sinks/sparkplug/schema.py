"""The Sparkplug B payload schema (``sparkplug_b.proto`` of Eclipse Sparkplug
3.0.0, package ``org.eclipse.tahu.protobuf``), declared with the protobuf
package's descriptor API and built into message classes at import.

Why not a generated ``_pb2`` module: generated code is build output (never
committed), and this schema is small and fixed by the spec.  The messages
and field numbers are the spec's; of the value types only those an edge
node of this gateway writes or reads are declared (``Payload``, ``Metric``,
``PropertySet``, ``PropertyValue``, ``PropertySetList``): DataSet, Template
and MetaData fields (numbers 8, 17, 18 of Metric) are left out, so a
received payload that carries them keeps them as unknown fields.

The classes live in a private descriptor pool: another library in the same
process that registers its own copy of ``sparkplug_b.proto`` (pysparkplug,
the tests' independent decoder) does not clash with this one.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"

# DataType enum of the spec (§6.4.16); the values are on the wire.
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING = 9, 10, 11, 12
DATETIME, TEXT, UUID, DATASET, BYTES, FILE, TEMPLATE = 13, 14, 15, 16, 17, 18, 19
PROPERTY_SET, PROPERTY_SET_LIST = 20, 21

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES,
}


def _message(file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple], oneof: str | None = None,
             parent: descriptor_pb2.DescriptorProto | None = None) -> descriptor_pb2.DescriptorProto:
    """fields: (name, number, type, label, in_oneof); a type that is not a
    scalar names a message (relative to the package)."""
    message = (parent.nested_type if parent is not None else file.message_type).add(name=name)
    if oneof:
        message.oneof_decl.add(name=oneof)
    for field_name, number, kind, label, in_oneof in fields:
        field = message.field.add(name=field_name, number=number, label=label)
        if kind in _TYPES:
            field.type = _TYPES[kind]
        else:
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{kind}"
        if in_oneof:
            field.oneof_index = 0
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="smemet/sparkplug_b.proto", package=PACKAGE, syntax="proto2")
    payload = _message(file, "Payload", [
        ("timestamp", 1, "uint64", _OPTIONAL, False),
        ("metrics", 2, "Payload.Metric", _REPEATED, False),
        ("seq", 3, "uint64", _OPTIONAL, False),
        ("uuid", 4, "string", _OPTIONAL, False),
        ("body", 5, "bytes", _OPTIONAL, False),
    ])
    payload.extension_range.add(start=6, end=536870912)
    value = "value"
    _message(file, "PropertyValue", [
        ("type", 1, "uint32", _OPTIONAL, False),
        ("is_null", 2, "bool", _OPTIONAL, False),
        ("int_value", 3, "uint32", _OPTIONAL, True),
        ("long_value", 4, "uint64", _OPTIONAL, True),
        ("float_value", 5, "float", _OPTIONAL, True),
        ("double_value", 6, "double", _OPTIONAL, True),
        ("boolean_value", 7, "bool", _OPTIONAL, True),
        ("string_value", 8, "string", _OPTIONAL, True),
        ("propertyset_value", 9, "Payload.PropertySet", _OPTIONAL, True),
        ("propertysets_value", 10, "Payload.PropertySetList", _OPTIONAL, True),
    ], oneof=value, parent=payload)
    property_set = _message(file, "PropertySet", [
        ("keys", 1, "string", _REPEATED, False),
        ("values", 2, "Payload.PropertyValue", _REPEATED, False),
    ], parent=payload)
    property_set.extension_range.add(start=3, end=536870912)
    property_list = _message(file, "PropertySetList", [
        ("propertyset", 1, "Payload.PropertySet", _REPEATED, False),
    ], parent=payload)
    property_list.extension_range.add(start=2, end=536870912)
    _message(file, "Metric", [
        ("name", 1, "string", _OPTIONAL, False),
        ("alias", 2, "uint64", _OPTIONAL, False),
        ("timestamp", 3, "uint64", _OPTIONAL, False),
        ("datatype", 4, "uint32", _OPTIONAL, False),
        ("is_historical", 5, "bool", _OPTIONAL, False),
        ("is_transient", 6, "bool", _OPTIONAL, False),
        ("is_null", 7, "bool", _OPTIONAL, False),
        ("properties", 9, "Payload.PropertySet", _OPTIONAL, False),
        ("int_value", 10, "uint32", _OPTIONAL, True),
        ("long_value", 11, "uint64", _OPTIONAL, True),
        ("float_value", 12, "float", _OPTIONAL, True),
        ("double_value", 13, "double", _OPTIONAL, True),
        ("boolean_value", 14, "bool", _OPTIONAL, True),
        ("string_value", 15, "string", _OPTIONAL, True),
        ("bytes_value", 16, "bytes", _OPTIONAL, True),
    ], oneof=value, parent=payload)
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())

Payload = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Payload"))
Metric = Payload.Metric
PropertySet = Payload.PropertySet
PropertyValue = Payload.PropertyValue
