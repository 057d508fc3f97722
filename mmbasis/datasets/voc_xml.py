"""Pascal VOC annotation files: read and check every box of a source image, write the annotation of a tile.

Coordinates follow Pascal VOC: integer pixel indices, 1-based and inclusive, so a box covers the pixels
``xmin..xmax`` and ``ymin..ymax`` and lies in the image when ``1 <= xmin`` and ``xmax <= width`` (the same for y).
mmdet's ``VOCDataset`` subtracts 1 from each coordinate and takes ``xmax - xmin`` as the width, so a box with
``xmin == xmax`` has zero width for mmdet (and an infinite regression target in training).

The rules for bad boxes in a source annotation (every fix is reported with the file, the object's index, its class
and its box; nothing is changed silently):

* a coordinate that is a number but not an integer (``12.5``) is rounded to the nearest integer (halves up);
* a box reaching outside the image is clipped to it;
* a box with zero width or height (``xmin == xmax`` or ``ymin == ymax``, also after clipping) is dropped;
* a box entirely outside the image is dropped.

Refused with :class:`VOCAnnotationError` (a ``ValueError`` naming the file, object and value): an inverted box
(``xmin > xmax`` or ``ymin > ymax``: which corner was meant cannot be known), a class name that is not one of the
dataset's classes, a missing or non-numeric coordinate, ``difficult``/``truncated`` values other than 0 and 1,
XML that does not parse, and a ``<size>`` that differs from the image's pixels.
"""

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import partial
from typing import List, Optional, Sequence, Tuple

Box = Tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (VOC: 1-based, inclusive)


class VOCAnnotationError(ValueError):
    """A source annotation that cannot be used as it is and has no stated fix."""


@dataclass(frozen=True)
class VOCObject:
    """One annotated object: class name, VOC box, and the VOC ``difficult`` / ``truncated`` flags."""

    name: str
    box: Box
    difficult: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class AnnotationFix:
    """A change made to a source box by one of the stated rules (see the module docstring)."""

    file: str
    index: int  # position of the <object> in the file, from 0
    name: str
    box: Tuple[float, float, float, float]  # as written in the file
    problem: str
    action: str

    def __str__(self) -> str:
        box = ', '.join(f'{v:g}' for v in self.box)
        return f'{self.file}: object {self.index} ({self.name}) box ({box}): {self.problem} -> {self.action}'


def _number(obj: ET.Element, tag: str, where: str) -> float:
    node = obj.find(f'bndbox/{tag}')
    text = None if node is None or node.text is None else node.text.strip()
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VOCAnnotationError(f'{where}: <bndbox><{tag}> is {text!r}, not a number') from None
    if not math.isfinite(value):
        raise VOCAnnotationError(f'{where}: <bndbox><{tag}> is {text!r}, not a finite number')
    return value


def _flag(obj: ET.Element, tag: str, where: str) -> bool:
    node = obj.find(tag)
    text = '0' if node is None or node.text is None else node.text.strip()
    if text not in ('0', '1'):
        raise VOCAnnotationError(f'{where}: <{tag}> is {text!r}; VOC allows 0 and 1')
    return text == '1'


def _add_fix(fixes: List[AnnotationFix], file: str, index: int, name: str, raw, problem: str, action: str) -> None:
    fixes.append(AnnotationFix(file, index, name, raw, problem, action))


def read_size(annotation: bytes, file: str) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from ``<size>``, or None when the file has no ``<size>``."""
    root = _parse(annotation, file)
    size = root.find('size')
    if size is None:
        return None
    try:
        return int(size.findtext('width', '')), int(size.findtext('height', ''))
    except ValueError:
        raise VOCAnnotationError(f'{file}: <size> has no integer <width> and <height>') from None


def _parse(annotation: bytes, file: str) -> ET.Element:
    try:
        root = ET.fromstring(annotation)
    except ET.ParseError as e:
        raise VOCAnnotationError(f'{file}: not valid XML ({e})') from None
    if root.tag != 'annotation':
        raise VOCAnnotationError(f'{file}: the root element is <{root.tag}>, a VOC annotation has <annotation>')
    return root


def read_objects(
    annotation: bytes, file: str, classes: Sequence[str], width: int, height: int
) -> Tuple[List[VOCObject], List[AnnotationFix]]:
    """The objects of a VOC annotation of a ``width`` x ``height`` image, checked and fixed by the module's rules.

    Returns the usable objects (in file order) and the fixes made. Raises :class:`VOCAnnotationError` for what
    is refused (see the module docstring).
    """
    root = _parse(annotation, file)
    size = read_size(annotation, file)
    if size is not None and size != (width, height):
        raise VOCAnnotationError(
            f'{file}: <size> says {size[0]}x{size[1]} but the image is {width}x{height} pixels (width x height)'
        )
    objects: List[VOCObject] = []
    fixes: List[AnnotationFix] = []
    for index, obj in enumerate(root.findall('object')):
        name = (obj.findtext('name') or '').strip()
        where = f'{file}: object {index} ({name or "no name"})'
        if name not in classes:
            raise VOCAnnotationError(f'{where}: class {name!r} is not one of the classes {tuple(classes)}')
        raw = tuple(_number(obj, tag, where) for tag in ('xmin', 'ymin', 'xmax', 'ymax'))
        difficult, truncated = _flag(obj, 'difficult', where), _flag(obj, 'truncated', where)
        box_text = ', '.join(f'{v:g}' for v in raw)
        if raw[0] > raw[2] or raw[1] > raw[3]:
            raise VOCAnnotationError(
                f'{where}: box ({box_text}) is inverted (xmin > xmax or ymin > ymax); which corner was meant '
                'cannot be known, so it is refused: correct the file'
            )
        fix = partial(_add_fix, fixes, file, index, name, raw)
        box = [math.floor(v + 0.5) for v in raw]
        if any(v != int(v) for v in raw):
            fix('coordinates are not integers', f'rounded to ({", ".join(map(str, box))})')
        limits = (width, height, width, height)
        clipped = [min(max(v, 1), limit) for v, limit in zip(box, limits)]
        outside = box[2] < 1 or box[3] < 1 or box[0] > width or box[1] > height
        if outside:
            fix(f'entirely outside the {width}x{height} image', 'dropped')
            continue
        if clipped != box:
            fix(f'reaches outside the {width}x{height} image', f'clipped to ({", ".join(map(str, clipped))})')
        if clipped[0] == clipped[2] or clipped[1] == clipped[3]:
            fix('zero width or height (xmin == xmax or ymin == ymax)', 'dropped')
            continue
        xmin, ymin, xmax, ymax = clipped
        objects.append(VOCObject(name, (xmin, ymin, xmax, ymax), difficult, truncated))
    return objects, fixes


def tile_annotation(folder: str, filename: str, width: int, height: int, objects: Sequence[VOCObject]) -> bytes:
    """The VOC XML of one tile (the same bytes for the same input: no dates, fixed element order)."""
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = folder
    ET.SubElement(root, 'filename').text = filename
    size = ET.SubElement(root, 'size')
    for tag, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, 'segmented').text = '0'
    for obj in objects:
        node = ET.SubElement(root, 'object')
        ET.SubElement(node, 'name').text = obj.name
        ET.SubElement(node, 'pose').text = 'Unspecified'
        ET.SubElement(node, 'truncated').text = str(int(obj.truncated))
        ET.SubElement(node, 'difficult').text = str(int(obj.difficult))
        bndbox = ET.SubElement(node, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), obj.box):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space='    ')
    return ET.tostring(root, encoding='utf-8', xml_declaration=False) + b'\n'
