"""The report as CSV: the same cells over HTTP and on the command line."""

import csv
import io

from app.csvstream import write_rows
from app.reports.schemas import ReportRow, ResponsivenessReport

CSV_COLUMNS = list(ReportRow.model_fields)


def report_csv(report: ResponsivenessReport) -> str:
    """The rows, then the total (its group empty); text cells guarded against formulas."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    write_rows(writer, ReportRow, [*report.items, report.total])
    return buffer.getvalue()
