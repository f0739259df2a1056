"""Export an award run as CSV or XLSX: Chinese headings by default, every text cell inert.

The rows are the run's frozen snapshot, not the live ledger, so the file says
exactly what the stored (hashed) run says.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.styles import Font

from app.i18n import normalise_locale, t
from app.rewards.models import AwardRun
from app.rewards.rules import ORG_AWARDS
from app.staff.stats import safe_cell

COLUMNS = (
    "section",
    "group",
    "rank",
    "name",
    "organisation",
    "points",
    "confirmed_tips",
    "nominee",
)
FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True)
class ExportFile:
    """A file to download."""

    content: bytes
    filename: str
    mimetype: str


def export_rows(run: AwardRun, locale: str = "zh") -> list[list]:
    """Return the heading row and one row per ranked reporter and organisation."""
    locale = normalise_locale(locale)
    yes, no = t("rewards.export.yes", locale), t("rewards.export.no", locale)
    rows: list[list] = [[t(f"rewards.export.col.{c}", locale) for c in COLUMNS]]
    snapshot = run.snapshot
    for role in sorted(snapshot["individuals"]):
        for r in snapshot["individuals"][role]:
            rows.append(
                [
                    t("rewards.export.section.individual", locale),
                    t(f"rewards.role.{role}", locale),
                    r["rank"],
                    r["pseudonym"],
                    r["organisation"] or "",
                    r["points"],
                    r["confirmed_tips"],
                    yes if r.get("nominee") else no,
                ]
            )
    for kind in sorted(snapshot["organisations"]):
        section = ORG_AWARDS.get(kind, "organisation")
        for r in snapshot["organisations"][kind]:
            rows.append(
                [
                    t(f"rewards.export.section.{section}", locale),
                    t(f"rewards.org_kind.{kind}", locale),
                    r["rank"],
                    r["name"],
                    "",
                    r["points"],
                    r["confirmed_tips"],
                    yes if r.get("nominee") else no,
                ]
            )
    return [[_cell(v) for v in row] for row in rows]


def _cell(value):
    """Keep numbers numeric (so the sheet can sort and sum); defuse every text cell."""
    return value if isinstance(value, int) and not isinstance(value, bool) else safe_cell(value)


def _filename(run: AwardRun, ext: str) -> str:
    return f"awards-{run.period}-run{run.run_no}.{ext}"


def export_csv(run: AwardRun, locale: str = "zh") -> ExportFile:
    """Write the run as UTF-8 CSV with a BOM (Excel then reads the Chinese correctly)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(export_rows(run, locale))
    return ExportFile(buffer.getvalue().encode("utf-8-sig"), _filename(run, "csv"), FORMATS["csv"])


def export_xlsx(run: AwardRun, locale: str = "zh") -> ExportFile:
    """Write the run as XLSX: the ranking sheet and a sheet with the run's hash and details."""
    locale = normalise_locale(locale)
    book = Workbook()
    sheet = book.active
    sheet.title = t("rewards.export.sheet.ranking", locale)
    for row in export_rows(run, locale):
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    about = book.create_sheet(t("rewards.export.sheet.about", locale))
    for key, value in (
        ("period", run.period),
        ("run_no", run.run_no),
        ("generated_at", run.snapshot.get("generated_at", "")),
        ("sha256", run.sha256),
    ):
        about.append([t(f"rewards.export.about.{key}", locale), _cell(value)])
    # Text is text: openpyxl would otherwise store a cell starting with "=" as a formula.
    for ws in (sheet, about):
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    cell.data_type = "s"
    buffer = io.BytesIO()
    book.save(buffer)
    return ExportFile(buffer.getvalue(), _filename(run, "xlsx"), FORMATS["xlsx"])


def export_run(run: AwardRun, fmt: str, locale: str = "zh") -> ExportFile:
    """Export a run in `csv` or `xlsx`."""
    if fmt == "csv":
        return export_csv(run, locale)
    if fmt == "xlsx":
        return export_xlsx(run, locale)
    raise ValueError(f"unknown export format {fmt!r}")
