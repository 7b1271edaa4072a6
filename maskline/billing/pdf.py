"""An invoice as a PDF (SPEC §12, §4): supplier and recipient, SAC, the tax split, the
total and the amount in words. Drawn with fpdf2's core fonts (Latin-1 text)."""

from __future__ import annotations

from fpdf import FPDF

from maskline.billing.models import Invoice
from maskline.kit.money import paise_to_rupees

ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)  # fmt: skip
TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)  # fmt: skip
# The Indian grouping: crore (10^7), lakh (10^5), thousand, hundred.
SCALES = ((10_000_000, "crore"), (100_000, "lakh"), (1_000, "thousand"), (100, "hundred"))


def _below_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def number_in_words(n: int) -> str:
    """``123456`` → ``one lakh twenty-three thousand four hundred fifty-six``."""
    if n < 100:
        return _below_hundred(n)
    for size, name in SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            words = f"{number_in_words(head)} {name}"
            return f"{words} {number_in_words(rest)}" if rest else words
    raise AssertionError("unreachable")


def amount_in_words(paise: int) -> str:
    """``Rupees one hundred eighteen and fifty paise only``."""
    rupees, rest = divmod(paise, 100)
    words = f"Rupees {number_in_words(rupees)}"
    if rest:
        words += f" and {number_in_words(rest)} paise"
    return words + " only"


def rupees(paise: int) -> str:
    return f"Rs {paise_to_rupees(paise):,.2f}"


def _text(value: str | None) -> str:
    # The core fonts are Latin-1: anything else is shown as "?" rather than refused.
    return (value or "").encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice as a one-page A4 PDF."""
    pdf = FPDF(format="A4")
    pdf.set_title(f"Tax invoice {invoice.invoice_number}")
    pdf.set_creator("maskline")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "Tax invoice", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = (
        ("Invoice number", invoice.invoice_number),
        ("Invoice date", invoice.invoice_date),
        ("Place of supply (state code)", invoice.place_of_supply),
        ("Reference", invoice.reference or "-"),
    )
    for label, value in facts:
        pdf.cell(60, 6, label)
        pdf.cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    parties = (
        (
            "Supplier",
            invoice.supplier_name or "-",
            invoice.supplier_address,
            invoice.supplier_gstin,
        ),
        ("Recipient", invoice.recipient_name, invoice.recipient_address, invoice.gstin),
    )
    for title, name, address, gstin in parties:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 5, _text(name), new_x="LMARGIN", new_y="NEXT")
        if address:
            pdf.multi_cell(0, 5, _text(address), new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 5, f"GSTIN: {_text(gstin) or 'unregistered'}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    widths = (100, 30, 50)
    for width, heading in zip(widths, ("Description", "SAC", "Amount"), strict=True):
        pdf.cell(width, 7, heading, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    pdf.cell(widths[0], 7, _text(invoice.description), border=1)
    pdf.cell(widths[1], 7, _text(invoice.sac), border=1)
    pdf.cell(widths[2], 7, rupees(invoice.amount), border=1, align="R")
    pdf.ln()
    lines = [("Taxable value", invoice.amount)]
    if invoice.igst:
        lines.append(("IGST 18%", invoice.igst))
    else:
        lines += [("CGST 9%", invoice.cgst), ("SGST 9%", invoice.sgst)]
    lines.append(("Total", invoice.total))
    for label, paise in lines:
        if label == "Total":
            pdf.set_font("Helvetica", "B", 10)
        pdf.cell(widths[0] + widths[1], 7, label, border=1, align="R")
        pdf.cell(widths[2], 7, rupees(paise), border=1, align="R")
        pdf.ln()
    pdf.ln(3)
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, 5, f"Amount in words: {amount_in_words(invoice.total)}")
    return bytes(pdf.output())
