"""Deprecated names and commands that keep working: moved Python names and moved tools forward to their new home.

A moved module keeps a two-line stub at its old path::

    from mmbasis.utils.deprecation import forward_module
    __getattr__ = forward_module(__name__, 'mmbasis.models.archs')

so that ``from mmbasis.paper_models import PAPER_MODELS`` still works and warns (``DeprecationWarning``, shown where
the old name is imported). A moved command keeps a stub at its old path that calls :func:`forward_tool`: it prints
one line naming the new command, warns, and runs the new one with the same arguments.
"""

import importlib
import os.path as osp
import runpy
import sys
import warnings
from typing import Callable, List, Mapping, Optional, Union

#: the release after which the deprecated names and commands may go
REMOVED_IN = 'mmbasis 0.3'


def forward_module(old: str, new: Union[str, Mapping[str, str]], default: Optional[str] = None) -> Callable:
    """A module ``__getattr__`` for the stub ``old``: attribute ``name`` is taken from the module ``new`` (or
    ``new[name]`` when ``new`` maps names to modules; names not in it from ``default``) with a DeprecationWarning.

    Unknown names raise ``AttributeError`` as for any module.
    """

    def __getattr__(name: str):
        target = new if isinstance(new, str) else new.get(name, default)
        if target is None or name.startswith('__'):
            raise AttributeError(f'module {old!r} has no attribute {name!r}')
        module = importlib.import_module(target)
        if not hasattr(module, name):
            raise AttributeError(f'module {old!r} has no attribute {name!r}')
        warnings.warn(
            f'{old}.{name} moved to {target}.{name}; the old name still works and will be removed in {REMOVED_IN}',
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)

    return __getattr__


def forward_tool(old: str, new: str, argv: Optional[List[str]] = None, repo: Optional[str] = None) -> None:
    """Run the command ``new`` in place of the moved command ``old`` (both relative to the repository root).

    ``new`` is a module of the source tree (``experiments.sharing_study``, run as ``python -m``) or a script path
    (``.dev_scripts/model_zoo.py``). Prints one line to stderr and warns (DeprecationWarning); the exit status is the
    new command's. ``repo``: the repository root (default: two levels above ``old``'s folder, ``tools/<kind>/``).
    """
    root = repo or osp.dirname(osp.dirname(osp.dirname(osp.abspath(old))))
    shown, was = new if new.endswith('.py') else f'python -m {new}', osp.relpath(osp.abspath(old), root)
    print(f'{was} moved to {shown}; this path forwards to it and will be removed in {REMOVED_IN}', file=sys.stderr)
    warnings.warn(f'{was} moved to {shown}', DeprecationWarning, stacklevel=2)
    sys.argv = [new, *(sys.argv[1:] if argv is None else argv)]
    if root not in sys.path:
        sys.path.insert(0, root)
    if new.endswith('.py'):
        path = osp.join(root, new)
        if not osp.isfile(path):
            raise SystemExit(f'error: {new} is not here ({path}): it is part of the source repository only')
        runpy.run_path(path, run_name='__main__')
    else:
        try:
            runpy.run_module(new, run_name='__main__', alter_sys=True)
        except ImportError as err:
            if new.split('.', maxsplit=1)[0] in str(err):
                raise SystemExit(f'error: {new} is part of the source repository only ({err})') from None
            raise
