"""The Hypnogram type: one night's 30-s epochs, stages, probabilities and scorer version.

Stage codes (``int8``): ``-1`` unscored, ``0`` wake, ``1`` light (N1+N2), ``2`` deep
(N3), ``3`` REM. Sleep/wake-only scorers (Cole-Kripke, Sadeh, van Hees) emit ``0``
for wake and ``1`` for any sleep; their ``scorer`` string names them, and per-stage
metrics computed from them describe sleep/wake only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.errors import StagingError
from sensord.model import EPOCH_NS, EPOCH_S

UNSCORED = -1
WAKE = 0
LIGHT = 1
DEEP = 2
REM = 3
STAGE_NAMES: tuple[str, ...] = ("wake", "light", "deep", "rem")
"""Names of stage codes 0..3 (index = code)."""

I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Hypnogram:
    """Per-epoch sleep stages of one night.

    Attributes
    ----------
    start_ns
        Start of the first epoch, UTC ns, a multiple of 30 s since the Unix epoch.
    stages
        ``int8`` stage code per epoch (see module docstring); ``-1`` = unscored.
    probabilities
        ``(n, 4)`` probabilities of wake/light/deep/REM per epoch (rows sum to 1);
        ``NaN`` rows for unscored epochs. Sleep/wake scorers put 1.0 on their call.
    scorer
        Name and version of the scorer/model that produced the stages.
    epoch_s
        Epoch length in seconds (30).
    """

    start_ns: int
    stages: I8
    probabilities: F64
    scorer: str
    epoch_s: int = EPOCH_S

    def __post_init__(self) -> None:
        stages = np.asarray(self.stages)
        probs = np.asarray(self.probabilities, dtype=np.float64)
        if stages.ndim != 1:
            raise StagingError(f"Hypnogram.stages must be 1-D, got shape {stages.shape}")
        if probs.shape != (stages.size, 4):
            raise StagingError(
                f"Hypnogram.probabilities must have shape ({stages.size}, 4), got {probs.shape}"
            )
        if stages.size and (stages.min() < UNSCORED or stages.max() > REM):
            raise StagingError(
                "Hypnogram.stages must be codes -1..3 (unscored/wake/light/deep/rem)"
            )
        if self.epoch_s != EPOCH_S:
            raise StagingError(f"Hypnogram.epoch_s must be {EPOCH_S}, got {self.epoch_s}")
        if int(self.start_ns) % EPOCH_NS:
            raise StagingError(
                f"Hypnogram.start_ns {self.start_ns} is not aligned to a multiple of {EPOCH_S} s"
            )
        object.__setattr__(self, "stages", stages.astype(np.int8, copy=False))
        object.__setattr__(self, "probabilities", probs)
        object.__setattr__(self, "start_ns", int(self.start_ns))

    def __len__(self) -> int:
        return int(self.stages.size)

    @property
    def end_ns(self) -> int:
        """End of the last epoch (exclusive), UTC ns."""
        return self.start_ns + len(self) * EPOCH_NS

    @property
    def t_ns(self) -> npt.NDArray[np.int64]:
        """Start time of every epoch, UTC ns."""
        return self.start_ns + np.arange(len(self), dtype=np.int64) * EPOCH_NS

    @property
    def scored(self) -> npt.NDArray[np.bool_]:
        """True where the epoch was scored."""
        return self.stages >= 0

    def stage_names(self) -> list[str]:
        """Stage name per epoch (``"unscored"`` for -1)."""
        names = np.array(("unscored", *STAGE_NAMES))
        return [str(s) for s in names[self.stages.astype(np.int64) + 1]]
