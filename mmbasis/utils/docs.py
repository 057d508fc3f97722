"""Generated blocks of the documentation pages, and the ``--doc`` option of the commands that write them.

A page holds a generated block between the lines ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a command writes
its table there (:func:`write_block`), so that hand-written text around it stays as it is. Commands take the page as
``--doc [PAGE]`` (:func:`add_doc_option`; alone: the page the block lives in) and still accept the former
``--readme FILE``, which warns (:func:`doc_target`).
"""

import argparse
import os.path as osp
import sys
import warnings
from typing import Optional

from .checkpoint_io import atomic_open
from .deprecation import REMOVED_IN


def replace_marked_block(text: str, marker: str, body: str, where: str = 'the file') -> str:
    """``text`` with everything between the lines ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->``
    replaced by ``body``; ``ValueError`` naming ``where`` unless the text holds exactly one such pair, in that
    order."""
    start, end = f'<!-- {marker}:start -->', f'<!-- {marker}:end -->'
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(
            f'{where} must contain one {start} line followed by one {end} line (generated text goes there)'
        )
    head, rest = text.split(start)
    return f'{head}{start}\n{body}\n{end}{rest.split(end)[1]}'


def block_problem(path: str, marker: str) -> Optional[str]:
    """Why the page ``path`` cannot take the block ``marker`` (to check before any long run), or None."""
    if not osp.isfile(path):
        return f'{path}: no such file'
    with open(path, encoding='utf-8') as f:
        try:
            replace_marked_block(f.read(), marker, '', where=path)
        except ValueError as err:
            return str(err)
    return None


def write_block(path: str, marker: str, body: str) -> None:
    """Replace the block ``marker`` of the page ``path`` by ``body``, atomically (a failure leaves the page intact)."""
    with open(path, encoding='utf-8') as f:
        text = replace_marked_block(f.read(), marker, body, where=path)
    with atomic_open(path, 'w') as f:
        f.write(text)


def add_doc_option(parser: argparse.ArgumentParser, page: str, what: str, always: bool = False) -> None:
    """``--doc [PAGE]`` (and the deprecated ``--readme FILE``) on ``parser``.

    ``page``: where the block lives in the documentation. ``always``: the command always writes the page
    (``--doc PATH`` only moves it); otherwise the page is written only when ``--doc`` is given (alone: ``page``).
    """
    if always:
        parser.add_argument('--doc', default=page, metavar='PAGE', help=f'{what} into PAGE (default {page})')
    else:
        parser.add_argument(
            '--doc', nargs='?', const=page, metavar='PAGE', help=f'also write {what} into PAGE (alone: {page})'
        )
    parser.add_argument('--readme', metavar='FILE', help='deprecated: the former name of --doc FILE')


def doc_target(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> Optional[str]:
    """The page a command writes to from ``--doc``/``--readme`` (None: none); ``--readme`` warns."""
    if args.readme is None:
        return args.doc
    print(
        f'--readme is deprecated (the generated tables live in docs pages now): use --doc {args.readme}; it will be '
        f'removed in {REMOVED_IN}',
        file=sys.stderr,
    )
    warnings.warn('--readme FILE is deprecated: use --doc FILE', DeprecationWarning, stacklevel=2)
    return args.readme
