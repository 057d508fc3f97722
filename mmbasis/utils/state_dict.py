"""The one report of how a state dict fits what it is loaded into: missing, unexpected and mis-shaped keys.

Every place of mmbasis that checks weights before loading them (a backbone's own load check, the ``Pretrained``
check, the converters, the decomposition, the deploy conversion) compares with :func:`compare_keys` and words the
problem with :meth:`KeyMismatch.problems`, so all of them name the same things the same way.
"""

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .misc import brief

Shape = Tuple[int, ...]


def _shape(value: Any) -> Optional[Shape]:
    """The shape of a tensor, or a shape given as a tuple/list; None for other values."""
    if hasattr(value, 'shape'):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


@dataclass(frozen=True)
class KeyMismatch:
    """How ``given`` keys fit ``expected`` ones (see :func:`compare_keys`).

    Attributes:
        missing: expected keys that ``given`` lacks (optional ones left out).
        unexpected: ``given`` keys that are not expected.
        shapes: ``(key, given shape, expected shape)`` of the keys present in both with other shapes.
    """

    missing: Tuple[str, ...]
    unexpected: Tuple[str, ...]
    shapes: Tuple[Tuple[str, Shape, Shape], ...]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def shape_lines(self, prefix: str = '', names: Optional[Mapping[str, str]] = None) -> List[str]:
        """``'key (given shape) vs (expected shape)'`` per mis-shaped key (``names``: a source name shown as
        ``'source -> key'``, for converters that rename keys)."""
        lines = []
        for key, got, want in self.shapes:
            shown = f'{names[key]} -> {prefix}{key}' if names and key in names else f'{prefix}{key}'
            lines.append(f'{shown} {got} vs {want}')
        return lines

    def problems(
        self,
        given: str = 'checkpoint',
        expected: str = 'model',
        limit: int = 6,
        prefix: str = '',
        labels: Optional[Mapping[str, str]] = None,
        names: Optional[Mapping[str, str]] = None,
    ) -> List[str]:
        """One phrase per kind of problem, e.g. ``'missing keys: a, b'``, ``'shape mismatches (checkpoint vs
        model): k (2, 3) vs (4, 3)'``; empty when everything fits.

        Args:
            given, expected: what the two sides are called in the shape phrase.
            limit: keys listed per kind (:func:`~mmbasis.utils.misc.brief`).
            prefix: prepended to every key shown (e.g. ``'backbone.'``).
            labels: other words for ``'missing'``, ``'unexpected'``, ``'shapes'`` (e.g. a converter's
                ``'unexpected official keys'``).
            names: source names of renamed keys (see :meth:`shape_lines`).
        """
        words = dict(
            missing='missing keys', unexpected='unexpected keys', shapes=f'shape mismatches ({given} vs {expected})'
        )
        words.update(labels or {})
        unexpected = [names.get(k, k) if names else k for k in self.unexpected]
        kinds = (
            ('missing', [prefix + k for k in self.missing]),
            ('unexpected', [prefix + k for k in unexpected]),
            ('shapes', self.shape_lines(prefix, names)),
        )
        return [f'{words[kind]}: {brief(keys, limit)}' for kind, keys in kinds if keys]


def compare_keys(
    expected: Mapping[str, Any], given: Mapping[str, Any], optional: Iterable[str] = ('num_batches_tracked',)
) -> KeyMismatch:
    """Compare the keys (and shapes) of ``given`` with those of ``expected``.

    Values are tensors or shapes (tuples). ``optional``: suffixes of expected keys that may be missing (BatchNorm
    counters, absent from old checkpoints). The order of each listing is the order of its mapping.
    """
    optional = tuple(optional)
    missing = tuple(k for k in expected if k not in given and not (optional and k.endswith(optional)))
    unexpected = tuple(k for k in given if k not in expected)
    shapes: List[Tuple[str, Shape, Shape]] = []
    for key, value in given.items():
        if key in expected:
            got, want = _shape(value), _shape(expected[key])
            if got is not None and want is not None and got != want:
                shapes.append((key, got, want))
    return KeyMismatch(missing, unexpected, tuple(shapes))


def shapes_of(state_dict: Mapping[str, Any]) -> Dict[str, Shape]:
    """``{key: shape}`` of a state dict (what :func:`compare_keys` needs of the expected side)."""
    return {k: _shape(v) for k, v in state_dict.items()}
