"""hftk: pretrain your own Transformers, fine-tune and evaluate them, share them on the Hub.

Importing hftk registers its model types with transformers' Auto classes -- as soon as
transformers itself is imported (now, if it already is). The registration waits for
transformers so that `import hftk.cli` (and `hftk --help`) does not pay for torch and
transformers, which take seconds to import.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register() -> None:
    # hftk.models registers its classes when imported; if it is being imported right now
    # (it imports transformers itself), its own last lines do it.
    importlib.import_module("hftk.models")


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps transformers' own loader to register hftk right after it runs.

    Python's import system has no post-import hook, so this is the usual wrapping-loader
    pattern (what `wrapt.when_imported` does). A `find_spec` probe without an import (as
    availability checks do) leaves the hook in place for the real import.
    """

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "transformers" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader, finder: _RegisterAfterTransformers) -> None:
        self._loader, self._finder = loader, finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register()


def _check_shadowing() -> None:
    """Warn when this package is not the installed hftk (hftk.shadowing says which look-alikes exist)."""
    import warnings
    from pathlib import Path

    from hftk.shadowing import foreign_package_note

    note = foreign_package_note(Path(__file__).parent)
    if note:
        warnings.warn(note, UserWarning, stacklevel=3)


_check_shadowing()

if "transformers" in sys.modules:
    _register()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
