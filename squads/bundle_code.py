"""A bundle's Python: the analyzers in its folder, imported and collected.

A bundle keeps its analyzers in ``analyzers.py`` or in the modules of an ``analyzers/`` folder;
any other module of the folder (its parsers) is imported by those, relatively (``from . import
postgres``). A shipped bundle is the package ``squads.bundles.<folder>``. A site bundle (a folder
under ``$SQUADS_CONFIG_DIR/squads/``) is imported as a package of its own, named after its path,
so two site folders never share modules and a reload runs the files as they are now.

Importing a site bundle runs the administrator's code in the control plane, like a plugin. The
config directory must therefore be writable by the administrator alone: a site bundle whose
folder, files, or bundles directory is group- or world-writable is refused (``check_private``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import re
import sys
import types
from pathlib import Path

from squads.brain.analyzers import forget, registered, shared
from squads.brain.models import Registered
from squads.grants import BUILTIN_BUNDLES, BundleError

ANALYZERS = "analyzers"


def is_builtin(folder: Path) -> bool:
    """Whether ``folder`` is one of the bundles that ship in ``squads/bundles/``."""
    return folder.resolve().parent == BUILTIN_BUNDLES.resolve()


def _package_of(folder: Path) -> str:
    if is_builtin(folder):
        return f"squads.bundles.{folder.name}"
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return f"squads_site_{re.sub(r'[^A-Za-z0-9_]', '_', folder.name)}_{digest}"


def _fresh_package(package: str, folder: Path) -> None:
    """An empty package ``package`` whose modules are the files of ``folder`` (any old copy dropped)."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]
    forget(package)
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = types.ModuleType(package)
    module.__spec__ = spec
    module.__path__ = [str(folder)]
    sys.modules[package] = module
    importlib.invalidate_caches()


def analyzer_modules(folder: Path, package: str) -> list[tuple[str, Path]]:
    """(module name, file) of each module that holds ``folder``'s analyzers: ``analyzers.py``, or
    ``analyzers/__init__.py`` and the other modules of ``analyzers/``."""
    single, many = folder / f"{ANALYZERS}.py", folder / ANALYZERS
    if single.is_file():
        return [(f"{package}.{ANALYZERS}", single)]
    if not many.is_dir():
        return []
    return [(f"{package}.{ANALYZERS}" if p.name == "__init__.py" else f"{package}.{ANALYZERS}.{p.stem}", p)
            for p in sorted(many.glob("*.py"))]


def load_analyzers(folder: Path) -> dict[str, Registered]:
    """The analyzers of the bundle in ``folder`` by name, with the shared ones (``common.*``).

    Raises BundleError naming the file when a module does not import or two analyzers share a name."""
    table = shared()
    package = _package_of(folder)
    modules = analyzer_modules(folder, package)
    if not modules:
        return table
    if not is_builtin(folder):
        _fresh_package(package, folder)
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # nothing is ever written into the config directory
    try:
        for name, path in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the admin's code: any error is a load error naming the file
                raise BundleError(f"{path}: cannot import the analyzers: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.dont_write_bytecode = writes
    for name, path in modules:
        for analyzer, entry in registered(name).items():
            if analyzer in table:
                clash = "a shared analyzer" if analyzer in shared() else "another module of this bundle"
                raise BundleError(f"{path}: analyzer {analyzer!r} is already registered by {clash}; rename it")
            table[analyzer] = entry
    return table
