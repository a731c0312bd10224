"""The gateway's address space: one object per gateway, per node, one
variable per channel, kept current from processed measurements.

Node ids (namespace ``NAMESPACE_URI``; browse names are the node's and the
channel's own names)::

    i=1                      the gateway object (browse name: the gateway id), under Objects
    i=2 .. i=7               its diagnostics (Version, StartTime, OutboxMeasurements, ...)
    s=<node>                 a node object, under the gateway
    s=<node>/<channel>       a channel variable, under its node
    s=<node>/<channel>#EngineeringUnits, #EURange   its properties
    s=<node>/<channel>#Calibration   the id of the calibration record that
                             corrected its value ("" when none did); made
                             when a corrected value first arrives
    s=<node>#Diagnostics     the node's diagnostics object
    s=<node>#<Name>          a diagnostics variable (LastSeen, Firmware, StoreDepth, Rejects, ...)

Node ids never contain "/" and never "#", so these never collide (a
channel name may contain "/": the first one ends the node id).

Variables are created when their first measurement arrives: Double
(BaseAnalogType, with EngineeringUnits and, where a range step defines one,
EURange), String or Boolean (BaseDataVariableType).  Nodes are added with
the address space's own node management in batches, not one awaited call
per node: 50,000 channels are made in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole

from .statuscodes import is_bad, stale_code, status_code
from .units import eu_information

_ADMIN = User(role=UserRole.Admin)
_READ = ua.AccessLevel.CurrentRead.mask
_READ_HISTORY = _READ | ua.AccessLevel.HistoryRead.mask
_HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_ORGANIZES = ua.NodeId(ua.ObjectIds.Organizes)
_OBJECT_TYPE = ua.NodeId(ua.ObjectIds.BaseObjectType)
_ANALOG_TYPE = ua.NodeId(ua.ObjectIds.BaseAnalogType)
_VARIABLE_TYPE = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
_PROPERTY_TYPE = ua.NodeId(ua.ObjectIds.PropertyType)
_DATA_TYPES = {
    ua.VariantType.Double: ua.NodeId(ua.ObjectIds.Double),
    ua.VariantType.String: ua.NodeId(ua.ObjectIds.String),
    ua.VariantType.Boolean: ua.NodeId(ua.ObjectIds.Boolean),
    ua.VariantType.DateTime: ua.NodeId(ua.ObjectIds.DateTime),
    ua.VariantType.UInt64: ua.NodeId(ua.ObjectIds.UInt64),
}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NEW_PER_STEP = 500  # new channel variables made before yielding to the event loop (~50 ms of work)

GATEWAY_DIAGNOSTICS = {  # browse name -> (numeric id, type)
    "Version": (2, ua.VariantType.String),
    "StartTime": (3, ua.VariantType.DateTime),
    "OutboxMeasurements": (4, ua.VariantType.UInt64),
    "OutboxBytes": (5, ua.VariantType.UInt64),
    "StorageFull": (6, ua.VariantType.Boolean),
    "IngestPaused": (7, ua.VariantType.Boolean),
}
# status record names (protocol SPEC §3.7) -> diagnostics browse names
STATUS_RECORDS = {
    "fw": "Firmware", "store_depth": "StoreDepth", "store_dropped": "StoreDropped", "store_torn": "StoreTorn",
    "uptime": "Uptime", "heap_free": "HeapFree", "reset_cause": "ResetCause", "rssi": "Rssi",
    "cfg_ver": "ConfigVersion",
}


def utc(seconds: float) -> datetime | None:
    """Unix seconds -> an aware datetime (None when not representable)."""
    if not math.isfinite(seconds):
        return None
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def variant_of(value) -> ua.Variant:
    """A measurement value as OPC UA carries it: numbers as Double, text as
    String (byte strings arrive as hex text, as on MQTT), booleans as Boolean."""
    if value is None:
        return ua.Variant(None, ua.VariantType.Null)
    if isinstance(value, bool):
        return ua.Variant(value, ua.VariantType.Boolean)
    if isinstance(value, (int, float)):
        return ua.Variant(float(value), ua.VariantType.Double)
    if isinstance(value, bytes):
        return ua.Variant(value.hex(), ua.VariantType.String)
    return ua.Variant(str(value), ua.VariantType.String)


def data_value(value, time: float, quality: int, reason: str | None, server_time: datetime | None) -> ua.DataValue:
    code = status_code(quality, reason)
    variant = ua.Variant(None, ua.VariantType.Null) if is_bad(code) else variant_of(value)
    return ua.DataValue(Value=variant, StatusCode=ua.StatusCode(code), SourceTimestamp=utc(time),
                        ServerTimestamp=server_time)


def eu_range(steps: list | None) -> ua.Range | None:
    """The range a chain's steps define: the last ``range`` step with both
    bounds, else the last ``current_loop`` span (LRV..URV)."""
    found = None
    for step in steps or ():
        if not isinstance(step, dict):
            continue
        if step.get("type") == "range" and "min" in step and "max" in step:
            found = ("range", float(step["min"]), float(step["max"]))
        elif step.get("type") == "current_loop" and "lrv" in step and "urv" in step and (found or ("",))[0] != "range":
            low, high = sorted((float(step["lrv"]), float(step["urv"])))
            found = ("loop", low, high)
    return None if found is None else ua.Range(Low=found[1], High=found[2])


@dataclass(slots=True)
class ChannelVariable:
    """What the server shows for one channel (and what it needs to redo the
    status when the node falls silent)."""

    nodeid: ua.NodeId
    node: str
    channel: str
    variant_type: ua.VariantType
    unit: str | None
    value: ua.DataValue | None = None
    stale: bool = False
    calibration: str | None = None  # the record id its Calibration property shows


class AddressSpace:
    """Builds and updates the nodes; everything here runs on the event loop."""

    def __init__(self, server, namespace: int, gateway_id: str, steps_for=None) -> None:
        self.server = server
        self.aspace = server.iserver.aspace
        self.nodes_service = server.iserver.node_mgt_service
        self.ns = namespace
        self.gateway_id = gateway_id
        self.steps_for = steps_for  # (node, channel) -> steps or None
        self.gateway_nodeid = ua.NodeId(1, namespace)
        self.channels: dict[str, ChannelVariable] = {}  # "node/channel" -> variable
        self.by_nodeid: dict[ua.NodeId, ChannelVariable] = {}
        self.node_objects: set[str] = set()
        self.node_channels: dict[str, list[ChannelVariable]] = {}
        self.diagnostics: dict[tuple[str, str], ua.NodeId] = {}  # (node, browse name) -> variable

    # ------------------------------------------------------------ building

    def build_gateway(self) -> None:
        items = [_object(self.gateway_nodeid, self.gateway_id, ua.NodeId(ua.ObjectIds.ObjectsFolder), self.ns,
                         _ORGANIZES, f"SME-MET Edge gateway {self.gateway_id}")]
        for name, (number, vtype) in GATEWAY_DIAGNOSTICS.items():
            items.append(_variable(ua.NodeId(number, self.ns), name, self.gateway_nodeid, self.ns, vtype,
                                   ua.DataValue(ua.Variant(None, ua.VariantType.Null)), _VARIABLE_TYPE, _READ))
        self._add(items)

    def ensure_node(self, node: str, items: list) -> None:
        if node in self.node_objects:
            return
        self.node_objects.add(node)
        self.node_channels[node] = []
        node_id = ua.NodeId(node, self.ns)
        items.append(_object(node_id, node, self.gateway_nodeid, self.ns, _HAS_COMPONENT, f"sensor node {node}"))
        items.append(_object(ua.NodeId(f"{node}#Diagnostics", self.ns), "Diagnostics", node_id, self.ns,
                             _HAS_COMPONENT, f"what the gateway knows about node {node}"))

    def _channel(self, node: str, channel: str, value, unit: str | None, items: list) -> ChannelVariable:
        self.ensure_node(node, items)
        variant = variant_of(value).VariantType
        vtype = variant if variant in (ua.VariantType.String, ua.VariantType.Boolean) else ua.VariantType.Double
        nodeid = ua.NodeId(f"{node}/{channel}", self.ns)
        var = ChannelVariable(nodeid, node, channel, vtype, unit)
        analog = vtype == ua.VariantType.Double
        items.append(_variable(nodeid, channel, ua.NodeId(node, self.ns), self.ns, vtype,
                               ua.DataValue(ua.Variant(None, ua.VariantType.Null),
                                            StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)),
                               _ANALOG_TYPE if analog else _VARIABLE_TYPE, _READ_HISTORY, historizing=True))
        if analog:
            if unit:
                items.append(_property(nodeid, "EngineeringUnits", self.ns, eu_information(unit),
                                       ua.NodeId(ua.ObjectIds.EUInformation)))
            limits = eu_range(self.steps_for(node, channel)) if self.steps_for else None
            if limits is not None:
                items.append(_property(nodeid, "EURange", self.ns, limits, ua.NodeId(ua.ObjectIds.Range)))
        key = f"{node}/{channel}"
        self.channels[key] = self.by_nodeid[nodeid] = var
        self.node_channels[node].append(var)
        return var

    def _add(self, items: list) -> None:
        if not items:
            return
        for item, result in zip(items, self.nodes_service.add_nodes(items, _ADMIN)):
            if not result.StatusCode.is_good() and result.StatusCode.value != ua.StatusCodes.BadNodeIdExists:
                raise RuntimeError(f"cannot add {item.RequestedNewNodeId}: {result.StatusCode.name}")

    # ------------------------------------------------------------ values

    async def update(self, latest: Iterable[tuple[str, str, object, float, str | None, int, str | None,
                                                  str | None]]) -> int:
        """Show the newest measurement of each channel given as (node,
        channel, value, time, unit, quality code, reason, calibration record
        id); returns how many variables changed."""
        now = datetime.now(timezone.utc)
        items: list = []
        pending = []
        made = 0
        for node, channel, value, time, unit, quality, reason, calibration in latest:
            var = self.channels.get(f"{node}/{channel}")
            if var is None:
                var = self._channel(node, channel, value, unit, items)
                made += 1
                if made % NEW_PER_STEP == 0:  # thousands of new channels: let the data path run in between
                    self._add(items)
                    items = []
                    await asyncio.sleep(0)
            pending.append((var, value, time, unit, quality, reason, calibration))
        self._add(items)
        write = self.aspace.write_attribute_value
        for var, value, time, unit, quality, reason, calibration in pending:
            dv = data_value(value, time, quality, reason, now)
            if dv.Value.VariantType not in (var.variant_type, ua.VariantType.Null):
                await self._retype(var, dv.Value.VariantType)
            if unit != var.unit and var.variant_type == ua.VariantType.Double and unit:
                await self._set_unit(var, unit)
            if calibration != var.calibration:
                await self._set_calibration(var, calibration)
            var.value = dv
            var.stale = False
            await write(var.nodeid, ua.AttributeIds.Value, dv)
        return len(pending)

    async def _set_calibration(self, var: ChannelVariable, calibration: str | None) -> None:
        """The Calibration property follows the newest value: its record's
        id, or "" once a value arrives that no record corrected."""
        var.calibration = calibration
        prop_id = ua.NodeId(f"{var.node}/{var.channel}#Calibration", self.ns)
        text = calibration or ""
        if prop_id in self.aspace:
            await self.aspace.write_attribute_value(prop_id, ua.AttributeIds.Value,
                                                    ua.DataValue(ua.Variant(text, ua.VariantType.String)))
        else:
            self._add([_property(var.nodeid, "Calibration", self.ns, ua.Variant(text, ua.VariantType.String),
                                 ua.NodeId(ua.ObjectIds.String), browse_ns=self.ns)])

    async def _retype(self, var: ChannelVariable, vtype: ua.VariantType) -> None:
        """A channel that sent numbers now sends text (or the other way):
        its DataType follows, so the value is never refused as a mismatch."""
        var.variant_type = vtype
        await self.aspace.write_attribute_value(var.nodeid, ua.AttributeIds.DataType,
                                                ua.DataValue(ua.Variant(_DATA_TYPES[vtype], ua.VariantType.NodeId)))

    async def _set_unit(self, var: ChannelVariable, unit: str) -> None:
        var.unit = unit
        unit_id = ua.NodeId(f"{var.node}/{var.channel}#EngineeringUnits", self.ns)
        if unit_id in self.aspace:
            await self.aspace.write_attribute_value(unit_id, ua.AttributeIds.Value,
                                                    ua.DataValue(ua.Variant(eu_information(unit))))
        else:
            self._add([_property(var.nodeid, "EngineeringUnits", self.ns, eu_information(unit),
                                 ua.NodeId(ua.ObjectIds.EUInformation))])

    async def mark_stale(self, node: str) -> int:
        """The node is silent: its channels keep their last value with the
        stale status (statuscodes.py); the next measurement clears it."""
        now = datetime.now(timezone.utc)
        changed = 0
        for var in self.node_channels.get(node, ()):
            if var.stale or var.value is None:
                continue
            code = stale_code(var.value.StatusCode.value)
            dv = ua.DataValue(Value=var.value.Value if not is_bad(code) else ua.Variant(None, ua.VariantType.Null),
                              StatusCode=ua.StatusCode(code), SourceTimestamp=var.value.SourceTimestamp,
                              ServerTimestamp=now)
            var.stale = True
            await self.aspace.write_attribute_value(var.nodeid, ua.AttributeIds.Value, dv)
            changed += 1
        return changed

    async def set_diagnostic(self, node: str | None, name: str, value, vtype: ua.VariantType,
                             time: float | None = None) -> None:
        """A diagnostics variable of a node (``None``: of the gateway); made
        at its first value."""
        if node is None:
            nodeid = ua.NodeId(GATEWAY_DIAGNOSTICS[name][0], self.ns)
        else:
            nodeid = self.diagnostics.get((node, name))
            if nodeid is None:
                items: list = []
                self.ensure_node(node, items)
                nodeid = ua.NodeId(f"{node}#{name}", self.ns)
                items.append(_variable(nodeid, name, ua.NodeId(f"{node}#Diagnostics", self.ns), self.ns, vtype,
                                       ua.DataValue(ua.Variant(None, ua.VariantType.Null)), _VARIABLE_TYPE, _READ))
                self._add(items)
                self.diagnostics[(node, name)] = nodeid
        variant = ua.Variant(None, ua.VariantType.Null) if value is None else ua.Variant(value, vtype)
        dv = ua.DataValue(Value=variant, SourceTimestamp=utc(time) if time is not None else None,
                          ServerTimestamp=datetime.now(timezone.utc))
        await self.aspace.write_attribute_value(nodeid, ua.AttributeIds.Value, dv)


def _object(nodeid: ua.NodeId, name: str, parent: ua.NodeId, ns: int, reference: ua.NodeId,
            description: str) -> ua.AddNodesItem:
    attributes = ua.ObjectAttributes()
    attributes.DisplayName = ua.LocalizedText(name)
    attributes.Description = ua.LocalizedText(description)
    attributes.EventNotifier = 0
    attributes.WriteMask = attributes.UserWriteMask = 0
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=reference, RequestedNewNodeId=nodeid,
                           BrowseName=ua.QualifiedName(name, ns), NodeClass=ua.NodeClass.Object,
                           NodeAttributes=attributes, TypeDefinition=_OBJECT_TYPE)


def _variable(nodeid: ua.NodeId, name: str, parent: ua.NodeId, ns: int, vtype: ua.VariantType, value: ua.DataValue,
              type_definition: ua.NodeId, access: int, historizing: bool = False) -> ua.AddNodesItem:
    attributes = ua.VariableAttributes()
    attributes.DisplayName = ua.LocalizedText(name)
    attributes.Value = value.Value
    attributes.DataType = _DATA_TYPES[vtype]
    attributes.ValueRank = ua.ValueRank.Scalar
    attributes.AccessLevel = attributes.UserAccessLevel = access
    attributes.Historizing = historizing
    attributes.WriteMask = attributes.UserWriteMask = 0
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=_HAS_COMPONENT, RequestedNewNodeId=nodeid,
                           BrowseName=ua.QualifiedName(name, ns), NodeClass=ua.NodeClass.Variable,
                           NodeAttributes=attributes, TypeDefinition=type_definition)


def _property(parent: ua.NodeId, name: str, ns: int, value, data_type: ua.NodeId,
              browse_ns: int = 0) -> ua.AddNodesItem:
    attributes = ua.VariableAttributes()
    attributes.DisplayName = ua.LocalizedText(name)
    attributes.Value = value if isinstance(value, ua.Variant) else ua.Variant(value)
    attributes.DataType = data_type
    attributes.ValueRank = ua.ValueRank.Scalar
    attributes.AccessLevel = attributes.UserAccessLevel = _READ
    attributes.WriteMask = attributes.UserWriteMask = 0
    # Part 8 properties have browse names in namespace 0; ours (Calibration) in the gateway's
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=_HAS_PROPERTY,
                           RequestedNewNodeId=ua.NodeId(f"{parent.Identifier}#{name}", ns),
                           BrowseName=ua.QualifiedName(name, browse_ns), NodeClass=ua.NodeClass.Variable,
                           NodeAttributes=attributes, TypeDefinition=_PROPERTY_TYPE)
