"""CPython's own smtplib tests, run against the blocking transport's drop-in.

``test.test_smtplib`` from the running interpreter's standard library is imported afresh
with ``sys.modules["smtplib"]`` replaced by ``smtp_proto.transports.sync``, and run with
unittest. The tests that fail must be exactly those listed, each with its reason, in
``tests/smtplib_expectations.py``: a new failure fails this test, and so does a listed test
that now passes (remove it from the table).

Some Python builds leave out the ``test`` package. The test is skipped then, except under
CI (``CI=true``), where a missing suite must not pass unnoticed.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import unittest
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from smtplib_expectations import EXPECTED_FAILURES, NOT_IN_EVERY_VERSION

if TYPE_CHECKING:
    # mypy cannot follow the editable install's mapping of transports/ to
    # smtp_proto.transports, so it checks the module under its folder's name.
    from transports import sync as drop_in
else:
    from smtp_proto.transports import sync as drop_in

SUITE = "test.test_smtplib"
PREFIX = SUITE + "."


def _tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _tests(item)
        else:
            yield item


def _short(test_id: str) -> str:
    # "test.test_smtplib.SMTPSimTests.testBasic (mechanism='PLAIN')" -> the part after the
    # module: subtests keep their parameters, so each has an id of its own.
    return test_id.removeprefix(PREFIX)


class _Result(unittest.TestResult):
    """A result that also collects, after each test, the ResourceWarnings of the objects
    the test left behind (an unclosed socket), so that they can be charged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.leaks: dict[str, list[str]] = {}

    def stopTest(self, test: unittest.TestCase) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        if leaked:
            self.leaks.setdefault(_short(test.id()), []).extend(leaked)
        super().stopTest(test)


@contextlib.contextmanager
def _smtplib_replaced() -> Iterator[None]:
    """Make ``import smtplib`` give the drop-in, and afterwards leave the interpreter as it
    was: the real smtplib, no copy of the suite bound to the drop-in, and the drop-in's
    ``socket`` (which the suite replaces with a mock while it runs) restored."""
    saved = {name: sys.modules.get(name) for name in ("smtplib", SUITE)}
    saved_socket = vars(drop_in)["socket"]
    package = sys.modules.get("test")
    saved_attribute = vars(package).get("test_smtplib") if package is not None else None
    sys.modules["smtplib"] = drop_in
    sys.modules.pop(SUITE, None)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module
            else:
                sys.modules.pop(name, None)
        package = sys.modules.get("test")
        if package is not None:
            # Importing a submodule also sets it as an attribute of its package.
            if saved_attribute is not None:
                vars(package)["test_smtplib"] = saved_attribute
            else:
                vars(package).pop("test_smtplib", None)
        vars(drop_in)["socket"] = saved_socket


def _missing_suite(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CPython's smtplib tests are required under CI: {reason}")
    pytest.skip(f"CPython's smtplib tests are unavailable: {reason}")


def test_cpython_smtplib_suite(record_property: Any) -> None:
    result = _Result()
    with _smtplib_replaced():
        try:
            module = importlib.import_module(SUITE)
        except (ImportError, unittest.SkipTest) as exc:
            _missing_suite(str(exc))
            return
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        present = {_short(test.id()) for test in _tests(suite)}
        suite.run(result)

    # The table must not go stale: every entry names a test this suite has (or one that
    # only newer versions have).
    stale = {name for name in EXPECTED_FAILURES if name not in present} - NOT_IN_EVERY_VERSION
    assert not stale, f"expectations name tests CPython's suite does not have: {sorted(stale)}"
    expected = {name for name in EXPECTED_FAILURES if name in present}

    problems = {_short(test.id()): trace for test, trace in result.failures + result.errors}
    problems.update(
        (_short(test.id()), "passed, but was expected to fail")
        for test in result.unexpectedSuccesses
    )
    failed = set(problems)
    broken = failed - expected
    fixed = expected - failed
    passed = (
        result.testsRun
        - len(result.failures)
        - len(result.errors)
        - len(result.skipped)
        - len(result.expectedFailures)
        - len(result.unexpectedSuccesses)
    )
    summary = (
        f"CPython {sys.version_info.major}.{sys.version_info.minor} test_smtplib against the "
        f"drop-in: {result.testsRun} run, {passed} passed, {len(failed)} failed "
        f"({len(failed & expected)} of them listed as expected), {len(result.skipped)} skipped"
    )
    record_property("cpython_smtplib_passed", passed)
    record_property("cpython_smtplib_run", result.testsRun)
    print(summary)
    report = [summary]
    for name in sorted(broken):
        report.append(f"--- unexpected failure: {name}\n{problems[name]}")
    for name in sorted(fixed):
        report.append(f"--- now passes, remove it from smtplib_expectations.py: {name}")
    assert failed == expected, "\n".join(report)
    # A test that fails may leave its connection open (the assertion that failed came
    # before its close); one that passes must not.
    leaks = {name: found for name, found in result.leaks.items() if name not in expected}
    assert not leaks, f"tests left resources open: {leaks}"
    # Most of CPython's suite must pass, not just the listed exceptions.
    assert passed >= 0.9 * result.testsRun, summary
