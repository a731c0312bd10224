"""Which measurements a sink takes: node/channel patterns and kinds.

``include`` minus ``exclude`` over "node/channel" (fnmatch patterns, e.g.
``furnace-*/t_*``), and the kinds ("data", "status").  Verdicts are cached
per (node, channel, kind) -- names come from nodes, so the cache is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from ..spine import KIND_NAMES, ProcessedFrame

_CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Selection:
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("data",)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)
    _takes_every_channel: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_takes_every_channel", self.include == ("*",) and not self.exclude)

    def allows(self, node: str, channel: str, kind: int) -> bool:
        key = (node, channel, kind)
        hit = self._cache.get(key)
        if hit is None:
            path = f"{node}/{channel}"
            hit = (
                KIND_NAMES[kind] in self.kinds
                and any(fnmatchcase(path, p) for p in self.include)
                and not any(fnmatchcase(path, p) for p in self.exclude)
            )
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = hit
        return hit

    def of(self, frame: ProcessedFrame) -> ProcessedFrame | None:
        """The measurements of ``frame`` this selection takes (the frame
        itself when it takes all), or None."""
        node, kind, allows = frame.node, frame.kind, self.allows
        channels = frame.channels
        if self._takes_every_channel:  # include = ["*"], nothing excluded: the usual case, and the hot path
            return frame if allows(node, "", kind) else None
        verdicts = {channel: allows(node, channel, kind) for channel in set(channels)}
        if all(verdicts.values()):
            return frame
        if not any(verdicts.values()):
            return None
        return frame.pick([i for i, channel in enumerate(channels) if verdicts[channel]])

