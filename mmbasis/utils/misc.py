"""Small helpers used across mmbasis: declarative argument checks and short listings for error messages."""

from typing import Any, Iterable, Optional, Sequence

from .deprecation import forward_module

# moved to mmbasis.utils.docs (generated blocks of docs pages)
__getattr__ = forward_module(__name__, {'replace_marked_block': 'mmbasis.utils.docs'})


def brief(items: Iterable[Any], limit: int = 6) -> str:
    """``'a, b, c, ... (N in total)'``: the first ``limit`` items of a listing for an error message."""
    items = [str(i) for i in items]
    head = ', '.join(items[:limit])
    return head + (f', ... ({len(items)} in total)' if len(items) > limit else '')


def is_int(value: Any) -> bool:
    """True for ``int`` values that are not ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: Optional[int] = None, high: Optional[int] = None) -> None:
    """``ValueError`` naming ``name=value`` unless ``value`` is an int (not a bool) in ``[low, high]``."""
    if is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return
    bound = {
        (True, True): f' in [{low}, {high}]',
        (True, False): f' >= {low}',
        (False, True): f' <= {high}',
        (False, False): '',
    }[(low is not None, high is not None)]
    raise ValueError(f'{name}={value!r} is not allowed: it must be an integer{bound}')


def check_bool(name: str, value: Any) -> None:
    """``TypeError`` naming ``name=value`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f'{name}={value!r} is not allowed: it must be True or False')


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """``ValueError`` naming ``name=value`` and the choices unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f'{name}={value!r} is not allowed: choose one of {tuple(choices)}')


def check_distinct(name: str, value: Any, allowed: Sequence[Any], allow_empty: bool = True, hint: str = '') -> tuple:
    """Validate a sequence of distinct items from ``allowed`` (a bare string or a bool is refused); return a tuple."""
    ok = (
        not isinstance(value, str)
        and isinstance(value, Sequence)
        and (allow_empty or len(value) > 0)
        and all(not isinstance(v, bool) and v in allowed for v in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise ValueError(
            f'{name}={value!r} is not allowed: use a tuple of distinct items from {tuple(allowed)}'
            + ('' if allow_empty else ' (at least one)')
            + (f'; {hint}' if hint else '')
        )
    return tuple(value)
