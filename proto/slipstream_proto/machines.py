"""Machine presets, as the seed's machines guide names them (the `machine` option's values)."""

from __future__ import annotations

import msgspec


class MachinePreset(msgspec.Struct, frozen=True):
    """vCPUs and memory of a preset."""

    name: str
    cpu: float
    memory_gb: float

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1024**3)


MACHINE_PRESETS: dict[str, MachinePreset] = {
    p.name: p
    for p in (
        MachinePreset("micro", 0.25, 0.25),
        MachinePreset("small-1x", 0.5, 0.5),
        MachinePreset("small-2x", 1, 1),
        MachinePreset("medium-1x", 1, 2),
        MachinePreset("medium-2x", 2, 4),
        MachinePreset("large-1x", 4, 8),
        MachinePreset("large-2x", 8, 16),
    )
}
DEFAULT_MACHINE = "small-1x"
