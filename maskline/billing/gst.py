"""GST rules (SPEC §4): the CGST+SGST / IGST split. (A GSTIN's shape is ``kit.gstin``'s.)"""

from __future__ import annotations

from dataclasses import dataclass

from maskline.kit.money import percent_half_up

GST_PERCENT = 18
HALF_GST_PERCENT = 9


@dataclass(frozen=True, slots=True)
class TaxSplit:
    cgst: int
    sgst: int
    igst: int

    @property
    def total_tax(self) -> int:
        return self.cgst + self.sgst + self.igst


def split_gst(amount_paise: int, *, recipient_state: str, provider_state: str) -> TaxSplit:
    """18% GST on ``amount``: CGST 9% + SGST 9% within a state, IGST 18% across states.

    Each component is rounded half-up to the paisa on its own.
    """
    if recipient_state == provider_state:
        half = percent_half_up(amount_paise, HALF_GST_PERCENT)
        return TaxSplit(cgst=half, sgst=half, igst=0)
    return TaxSplit(cgst=0, sgst=0, igst=percent_half_up(amount_paise, GST_PERCENT))
