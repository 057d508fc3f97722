"""Datasets registered in mmdet's DATASETS registry: the generated shapes dataset."""

from .shapes import (
    SHAPES_CLASSES,
    SyntheticShapesDataset,
    draw_shapes_image,
    generate_shapes_for_config,
    generate_shapes_split,
)

__all__ = [
    'SHAPES_CLASSES',
    'SyntheticShapesDataset',
    'draw_shapes_image',
    'generate_shapes_for_config',
    'generate_shapes_split',
]
