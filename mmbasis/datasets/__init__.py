"""Datasets registered in mmdet's DATASETS registry: the generated shapes dataset and the real deepforest trees
(tiled into Pascal VOC by the generic tiler :func:`make_tiled_voc`)."""

from .deepforest import DeepForestTreesDataset, fetch_deepforest_wheel, make_deepforest_voc
from .shapes import (
    SHAPES_CLASSES,
    SyntheticShapesDataset,
    draw_shapes_image,
    generate_shapes_for_config,
    generate_shapes_split,
)
from .transforms import StandardizeImage
from .voc_tiles import TILE_DEFAULTS, TiledVOC, VOCSource, make_tiled_voc
from .voc_xml import AnnotationFix, VOCAnnotationError

__all__ = [
    'SHAPES_CLASSES',
    'SyntheticShapesDataset',
    'draw_shapes_image',
    'generate_shapes_for_config',
    'generate_shapes_split',
    'DeepForestTreesDataset',
    'fetch_deepforest_wheel',
    'make_deepforest_voc',
    'StandardizeImage',
    'TILE_DEFAULTS',
    'TiledVOC',
    'VOCSource',
    'make_tiled_voc',
    'AnnotationFix',
    'VOCAnnotationError',
]
