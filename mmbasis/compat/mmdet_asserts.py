"""mmdet's argument checks that are bare ``assert`` statements, turned into errors that name the bad value.

For: mmdet 3.3.0, whose ``ResNet.__init__`` (and ``ResLayer``) validate their arguments with ``assert`` (gone under
``python -O``, and an ``AssertionError`` without the value when not). Remove when: mmdet raises ``ValueError`` with
the value itself; ``tests/test_models/test_backbones/test_shared_resnet.py`` (bad mmdet arguments) shows it.
"""

import traceback
from contextlib import contextmanager
from typing import Iterator, Mapping


@contextmanager
def mmdet_argument_checks(what: str, given: Mapping[str, object]) -> Iterator[None]:
    """Run a block that calls mmdet's constructor ``what``; an ``AssertionError`` of mmdet's argument checks becomes a
    ``ValueError`` naming the arguments ``given`` and the check that failed (the assertion's own source line)."""
    try:
        yield
    except AssertionError as e:
        failed = traceback.extract_tb(e.__traceback__)[-1].line
        shown = ', '.join(f'{k}={v!r}' for k, v in given.items())
        raise ValueError(
            f'{what} refused the arguments {shown}: the check `{failed}` failed{f" ({e})" if str(e) else ""}'
        ) from e
