"""The test suite's own layout: test files import shared helpers from helper modules, never from each other."""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            if node.module == "tests":
                yield from (f"tests.{alias.name}" for alias in node.names)


def test_no_file_of_the_suite_imports_a_test_file_or_conftest():
    offenders = [f"{path.name} imports {module}" for path in sorted(TESTS.glob("*.py"))
                 for module in imported_modules(path)
                 if module.startswith(("tests.test_", "tests.conftest"))]
    assert not offenders, "move the shared code into a helper module (tests/tiny_run.py, ...): " + "; ".join(offenders)
