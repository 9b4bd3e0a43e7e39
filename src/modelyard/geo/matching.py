"""The matching rules, pure: whether a scene suits an AOI, and why not.

A scene matches an active AOI when their footprints intersect, and the AOI's wavelengths are each
covered (centre ± FWHM/2) by a band whose GSD is at most the AOI's ``target_resolution``; an AOI that
wants no particular wavelength needs the scene's GSD (the item's, else its finest band's) to be at most
that. A band or scene with no GSD at all cannot show it is fine enough, so it does not match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.geo.bands import Band
from modelyard.geo.spatial import AoiEntry, Candidate


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one AOI matched a scene, and each rule's outcome (for ``?explain=true``)."""

    aoi: AoiEntry
    matched: bool
    reasons: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """The wire form of one explained AOI."""
        return {
            "aoi_id": self.aoi.id,
            "name": self.aoi.name,
            "model": self.aoi.model,
            "matched": self.matched,
            "reasons": self.reasons,
        }


def _fine(gsd: float | None, limit: float) -> bool:
    return gsd is not None and gsd <= limit


def judge(candidate: Candidate, bands: Sequence[Band], gsd: float | None) -> Verdict:
    """The verdict on one candidate AOI for a scene with ``bands`` and ``gsd``."""
    aoi, reasons, ok = candidate.aoi, [], True
    if candidate.intersects:
        reasons.append("footprint intersects the AOI")
    else:
        ok = False
        reasons.append("footprint does not intersect the AOI (only their bounding boxes overlap)")
    limit = aoi.target_resolution
    if not aoi.wavelengths:
        if _fine(gsd, limit):
            reasons.append(f"GSD {gsd:g} m <= target resolution {limit:g} m")
        else:
            ok = False
            shown = "unknown" if gsd is None else f"{gsd:g} m"
            reasons.append(f"GSD {shown} is not <= target resolution {limit:g} m")
    for wanted in aoi.wavelengths:
        covering = [b for b in bands if b.covers(wanted)]
        fine = [b for b in covering if _fine(b.gsd, limit)]
        if fine:
            band = fine[0]
            reasons.append(f"{wanted:g} µm in band {band.name or band.common_name} at {band.gsd:g} m")
        elif covering:
            ok = False
            gsds = ", ".join("unknown" if b.gsd is None else f"{b.gsd:g} m" for b in covering)
            reasons.append(f"{wanted:g} µm is covered only at GSD {gsds}, not <= {limit:g} m")
        else:
            ok = False
            reasons.append(f"{wanted:g} µm is in no band")
    return Verdict(aoi, ok, reasons)


def judge_all(candidates: Sequence[Candidate], bands: Sequence[Band], gsd: float | None) -> list[Verdict]:
    """The verdicts on every candidate, in AOI id order."""
    return [judge(c, bands, gsd) for c in sorted(candidates, key=lambda c: c.aoi.id)]
