"""Checks of the package as a whole rather than of one module.

- The engine is sans-I/O: none of its modules imports a module that does I/O, waits, or
  starts threads or processes, and importing the package loads none of them.
- The public API is what ``smtp_proto.__all__`` says, and every name in it shows its public
  path.
- Every event is an immutable value: a frozen, slotted, keyword-only dataclass.
- What gets installed is right: ``py.typed`` ships, and the transports exist only as
  ``smtp_proto.transports``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.resources
import os
import subprocess
import sys
from pathlib import Path

import pytest

import smtp_proto

PACKAGE_DIR = Path(smtp_proto.__file__).parent

# The engine's own modules: the files directly in the package folder. Subpackages are left
# out, and in particular `smtp_proto/transports`, which is where an installed copy puts the
# repository's `transports/` folder: transports exist to do I/O.
ENGINE_MODULES = sorted(path for path in PACKAGE_DIR.glob("*.py") if path.is_file())

# Modules that touch the network, the clock, the file system, threads or processes. The
# engine takes bytes and time as arguments and returns bytes and events; it needs none.
IO_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "select",
        "selectors",
        "asyncio",
        "trio",
        "anyio",
        "threading",
        "_thread",
        "time",
        "multiprocessing",
        "subprocess",
        "concurrent",
        "os",
    }
)

# The subset whose presence in sys.modules after `import smtp_proto` is checked. `os`, `time`
# and `_thread` are already loaded when the interpreter starts, so there they prove nothing.
IO_MODULES_NOT_PRELOADED = ("socket", "ssl", "select", "selectors", "asyncio", "trio", "threading")


def imported_modules(source: str, filename: str = "<string>") -> set[str]:
    """Top-level names of the modules that *source* imports absolutely.

    Relative imports (``from ._events import Reply``) are the engine's own and are skipped.
    Imports under ``if TYPE_CHECKING:`` count too: the engine has no reason to mention an
    I/O module even in annotations.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names.add(node.module.partition(".")[0])
    return names


def io_imports(source: str, filename: str = "<string>") -> list[str]:
    """The I/O modules that *source* imports, sorted."""
    return sorted(imported_modules(source, filename) & IO_MODULES)


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter of the environment under test.

    ``-I`` keeps the current directory and ``PYTHON*`` variables off ``sys.path``, so the
    child imports the installed package. Coverage's subprocess hooks are switched off as well:
    they would import modules of their own (threading among them) before *code* runs.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COV_CORE_", "COVERAGE_"))
    }
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def exported_names() -> list[str]:
    """``smtp_proto.__all__``, or every public attribute while it is missing."""
    names = vars(smtp_proto).get("__all__")
    if names is None:
        return sorted(name for name in vars(smtp_proto) if not name.startswith("_"))
    return list(names)


def private_modules_of_package() -> list[str]:
    """The private modules that ``smtp_proto/__init__.py`` imports from, such as ``_events``."""
    init = PACKAGE_DIR / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"), str(init))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is not None:
            top = node.module.partition(".")[0]
            if top.startswith("_"):
                modules.add(top)
    return sorted(modules)


def event_classes() -> list[type[smtp_proto.Event]]:
    """Every exported subclass of :class:`smtp_proto.Event`, without Event itself."""
    classes: list[type[smtp_proto.Event]] = []
    for name in exported_names():
        value = getattr(smtp_proto, name, None)
        if (
            isinstance(value, type)
            and issubclass(value, smtp_proto.Event)
            and value is not smtp_proto.Event
        ):
            classes.append(value)
    return classes


# --- The engine does no I/O --------------------------------------------------------------


def test_engine_modules_are_found() -> None:
    # An empty list would make the parametrized check below pass without checking anything.
    names = [path.name for path in ENGINE_MODULES]
    assert "__init__.py" in names
    assert len(names) > 1


def test_import_checker_flags_io_imports() -> None:
    source = "import socket\nfrom asyncio import sleep\nimport os.path\n"
    assert io_imports(source) == ["asyncio", "os", "socket"]


def test_import_checker_ignores_relative_and_harmless_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "import dataclasses, enum\n"
        "from . import _events\n"
        "from ._socket import Reader\n"
        "from collections.abc import Mapping\n"
    )
    assert io_imports(source) == []


def test_import_checker_looks_inside_functions_and_conditionals() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import ssl\n"
        "def f():\n"
        "    import threading\n"
    )
    assert io_imports(source) == ["ssl", "threading"]


@pytest.mark.parametrize("path", ENGINE_MODULES, ids=lambda path: path.name)
def test_engine_module_imports_no_io_module(path: Path) -> None:
    found = io_imports(path.read_text(encoding="utf-8"), str(path))
    assert found == [], f"{path.name} imports I/O modules: {', '.join(found)}"


def test_importing_the_package_loads_no_io_module() -> None:
    code = (
        "import sys\n"
        "import smtp_proto\n"
        f"print(' '.join(name for name in {IO_MODULES_NOT_PRELOADED!r} if name in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"importing smtp_proto loaded: {result.stdout.strip()}"


# --- The public API ----------------------------------------------------------------------


def test_all_is_defined() -> None:
    names = vars(smtp_proto).get("__all__")
    assert names is not None, "smtp_proto defines no __all__"
    assert len(set(names)) == len(names), "smtp_proto.__all__ lists a name twice"


def test_all_names_exist_and_are_public() -> None:
    names = exported_names()
    assert [name for name in names if not hasattr(smtp_proto, name)] == []
    assert [name for name in names if name.startswith("_")] == []


@pytest.mark.parametrize("module_name", private_modules_of_package())
def test_private_module_is_reexported(module_name: str) -> None:
    module = importlib.import_module(f"smtp_proto.{module_name}")
    module_all = vars(module).get("__all__")
    assert module_all is not None, f"smtp_proto.{module_name} defines no __all__"
    public = [name for name in module_all if not name.startswith("_")]
    missing = sorted(set(public) - set(exported_names()))
    assert missing == [], f"smtp_proto.{module_name} exports names smtp_proto does not: {missing}"


def test_exported_classes_show_the_public_module() -> None:
    # Reprs, tracebacks and generated docs should say `smtp_proto.Reply`, not the private
    # module it happens to be defined in.
    wrong = {
        name: value.__module__
        for name in exported_names()
        if isinstance(value := getattr(smtp_proto, name), type) and value.__module__ != "smtp_proto"
    }
    assert wrong == {}


# --- Events are values -------------------------------------------------------------------


def test_event_classes_are_found() -> None:
    names = {cls.__name__ for cls in event_classes()}
    assert {"Reply", "Greeting", "ConnectionClosed"} <= names


@pytest.mark.parametrize("cls", event_classes(), ids=lambda cls: cls.__name__)
# `cls` is typed `type[object]` because mypy finds a `type[Event]` that `is_dataclass()` accepts
# impossible and would then skip the rest of the test as unreachable.
def test_event_is_a_frozen_slotted_keyword_only_dataclass(cls: type[object]) -> None:
    assert dataclasses.is_dataclass(cls)
    assert vars(cls)["__dataclass_params__"].frozen
    # `slots=True` puts __slots__ in the class itself; one inherited from Event is not enough,
    # since without its own the subclass would get a __dict__.
    assert "__slots__" in cls.__dict__
    not_keyword_only = [field.name for field in dataclasses.fields(cls) if not field.kw_only]
    assert not_keyword_only == []
    # A frozen dataclass refuses every assignment, even on an instance whose __init__ never
    # ran, so there is no need to build a valid one.
    instance = object.__new__(cls)
    fields = dataclasses.fields(cls)
    name = fields[0].name if fields else "anything"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, name, None)


# --- What gets installed -----------------------------------------------------------------


def test_py_typed_is_shipped() -> None:
    assert importlib.resources.files("smtp_proto").joinpath("py.typed").is_file()


def test_transports_are_installed_only_inside_the_package(tmp_path: Path) -> None:
    # Run from an empty directory so the repository root, which holds the `transports/`
    # folder, cannot be on sys.path by accident.
    code = (
        "try:\n"
        "    import transports\n"
        "except ModuleNotFoundError:\n"
        "    print('bare transports: absent')\n"
        "else:\n"
        "    print('bare transports: found at', transports.__file__)\n"
        "import smtp_proto.transports\n"
        "print('smtp_proto.transports:', smtp_proto.transports.__name__)\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "bare transports: absent",
        "smtp_proto.transports: smtp_proto.transports",
    ]
