"""The ``attest`` command group: vendor signing and customer checking.

Only argument handling lives in the cli package; each command's logic is in
uc_attest._internal.attest, uc_attest._internal.check and uc_attest._internal.report.
"""

from __future__ import annotations

import click

from .attest_bom import bom_command
from .attest_check import check_command
from .attest_keys import keygen_command
from .attest_probe import probe_command
from .attest_report import report_command, verify_report_command
from .attest_sign import sign_command
from .common import debug_option, run_group


@click.group(name="attest", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="uc_attest")
@debug_option
def attest_group() -> None:
    """Sign a pack's acceptance test (vendor) and check it air-gapped (customer)."""


attest_group.add_command(keygen_command)
attest_group.add_command(sign_command)
attest_group.add_command(check_command)
attest_group.add_command(report_command)
attest_group.add_command(verify_report_command)
attest_group.add_command(bom_command)
attest_group.add_command(probe_command)


def main() -> None:
    run_group(attest_group)
