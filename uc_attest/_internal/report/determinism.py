"""Make WeasyPrint's font subsetting give the same bytes on every run and machine.

WeasyPrint subsets fonts with the system's libharfbuzz-subset when it finds
one, and with fontTools otherwise. The first makes the PDF depend on whichever
HarfBuzz the machine has; the second stamps the subset font's ``head.modified``
with the wall clock. Both break "same results, same bytes". During a render we
therefore (1) route subsetting to fontTools, whose version pip pins, and (2)
give fontTools a fixed time through SOURCE_DATE_EPOCH (the reproducible-builds
convention it honours). Both settings are restored afterwards; rendering is
not meant to run concurrently in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

FONTTOOLS_NOTICE = "Using fontTools instead of HarfBuzz-Subset"
"""WeasyPrint's warning when it subsets with fontTools: expected here, not a problem."""


@contextmanager
def deterministic_fonts(moment: datetime) -> Iterator[None]:
    """Within the block, subset fonts with fontTools and timestamp them at ``moment``."""
    from weasyprint.pdf import fonts as pdf_fonts

    saved_subset = pdf_fonts.harfbuzz_subset
    saved_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    pdf_fonts.harfbuzz_subset = None
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        yield
    finally:
        pdf_fonts.harfbuzz_subset = saved_subset
        if saved_epoch is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved_epoch
