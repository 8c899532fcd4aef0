"""The dashboard's CSP (``script-src 'self'``, no ``unsafe-eval``) makes Playwright's polling of a *string expression*
fail with an EvalError whenever the condition is not already true at the first check; a function (``"() => …"``)
is called without eval. Every wait on a page condition must therefore pass a function."""

from __future__ import annotations

import re
from pathlib import Path

EXPRESSION_WAIT = re.compile(r"wait_for_function\(\s*f?[\"']++(?!\s*\(|\s*async\s*\()")
"""A call whose first argument is a string (any quotes, taken whole) that does not start with a parameter list."""


def test_every_browser_wait_passes_a_function_not_an_expression():
    found = []
    for path in sorted(p for p in Path(__file__).parent.glob("*.py") if p.name != Path(__file__).name):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}" for m in EXPRESSION_WAIT.finditer(text)]
    assert not found, f"string-expression waits (use '() => ...'): {found}"


def test_the_pattern_tells_the_two_forms_apart():
    assert EXPRESSION_WAIT.search('page.wait_for_function("window.x > 1")')
    assert not EXPRESSION_WAIT.search('page.wait_for_function("() => window.x > 1")')
    assert not EXPRESSION_WAIT.search('page.wait_for_function(\n    "([a, b]) => a > b", arg=[1, 2])')
    assert not EXPRESSION_WAIT.search('page.wait_for_function("""() =>\n    window.x > 1""")')
    assert EXPRESSION_WAIT.search('page.wait_for_function("""window.x > 1""")')
