"""Check 5: the pack's own structure, as ``uc verify`` judges it (manifest, files, tensors, config)."""

from __future__ import annotations

from .context import FAIL_FAST, CheckContext, failed, passed, skipped
from .results import CheckResult

NAME = "pack_structure"


def check_pack_structure(ctx: CheckContext) -> CheckResult:
    if ctx.pack_skipped:
        return skipped(NAME, FAIL_FAST)
    if ctx.verified is None:
        return failed(NAME, f"The pack cannot be read: {ctx.pack_error}")
    report = ctx.verified.report
    if report.ok:
        tolerated = f"; {len(report.tolerated)} unlisted entries tolerated by the policy, never read." if report.tolerated else "."
        return passed(NAME, f"Manifest {report.format} {report.format_version} read strictly; {len(report.files)} files and {len(report.tensors)} tensors verified against it{tolerated}",
                      {"files": len(report.files), "tensors": len(report.tensors), "tolerated": len(report.tolerated)})  # fmt: skip
    return failed(NAME, report.failure_summary(), {"failures": len(report.failures)})
