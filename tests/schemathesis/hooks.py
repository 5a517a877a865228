"""Loaded by run.sh (SCHEMATHESIS_HOOKS=hooks): works around an interpreter bug, changes no test.

CPython 3.11 (seen with 3.11.2 and 3.11.7; not with 3.13) can raise `SystemError: AST constructor
recursion depth mismatch` from `ast.parse` when it is called deep inside Hypothesis's
strategy-building, where Hypothesis parses a source file only to print a lambda's source in a
strategy's repr. The repr is cosmetic, so such a failure falls back to Hypothesis's own
"unknown lambda" description instead of aborting the whole operation's test.
"""

from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _describe_or_unknown(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _describe_or_unknown
