"""Locating the configs shipped with mmbasis (repository ``configs/`` or the wheel's ``.mim/configs``)."""

import difflib
from pathlib import Path


def config_root() -> Path:
    """``<repo>/configs`` in a source checkout (editable install), else ``mmbasis/.mim/configs``."""
    pkg = Path(__file__).resolve().parents[1]
    for root in (pkg.parent / 'configs', pkg / '.mim' / 'configs'):
        if root.is_dir():
            return root
    raise FileNotFoundError(
        f'mmbasis configs not found next to the package ({pkg.parent / "configs"}) nor in '
        f'{pkg / ".mim" / "configs"}; reinstall mmbasis'
    )


def get_config_path(name: str) -> str:
    """Absolute path of a config shipped with mmbasis (relative to configs/), e.g.
    ``'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'``.

    Raises ``FileNotFoundError`` listing close matches when it does not exist.
    """
    if not isinstance(name, str) or not name.endswith('.py'):
        raise ValueError(f'name={name!r} is not allowed: give a config path relative to configs/, ending in .py')
    root = config_root()
    path = root / name
    if path.is_file():
        return str(path)
    known = sorted(str(p.relative_to(root)) for p in root.rglob('*.py') if '_base_' not in p.parts)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.3)
    hint = f'; did you mean: {", ".join(close)}' if close else f'; available: {", ".join(known)}'
    raise FileNotFoundError(f'no mmbasis config {name!r} under {root}{hint}')
