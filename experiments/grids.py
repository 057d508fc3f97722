"""The grids of the studies: what each study trains (its cells: a config, with or without the regulariser) and how
its runs are measured (the metrics of its evaluator, its comparisons, its data variants). Data, one cell a line:
:mod:`experiments.common` runs a cell, :mod:`experiments.sharing_study` runs a grid."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Cell:
    """A grid cell: a config (relative to ``configs/``), with or without the regulariser, and its label."""

    key: str
    label: str
    config: str
    regularizer: bool


@dataclass(frozen=True)
class Grid:
    """The cells of a study on one dataset and how its runs are measured.

    Attributes:
        name: the dataset's name (``--grid``).
        cells: the cells, in the order of the tables.
        metrics: CSV column -> metric key of the evaluator; the first is the main metric.
        metric_labels: CSV column -> its heading in the tables.
        variants: data variants (``--dataset``): ``--cfg-options`` applied to every run.
        comparisons: ``(cell, reference cell, question)`` of the study's comparison table (one Holm family).
        own_comparisons: ``(cell, reference cell, question)`` of a second table, a Holm family of its own: questions
            about variants of ours (hardware-aligned ranks against the paper's), kept apart so that adding them
            leaves the paper's comparisons and their corrections unchanged.
        epochs: the configs' own schedule (a run without ``--epochs``).
        checkpoint_every: epochs between a run's checkpoints, where an interrupted run resumes (None: every half
            schedule, where the warm-start study decomposes the plain runs; two checkpoints are kept either way).
        axis: the metric's axis label in the plots; title: the plots' title (``{epochs}`` filled in).
        results: the folder under ``docs/results/`` of its CSV, summaries and plots; page: its documentation page.
    """

    name: str
    cells: Tuple[Cell, ...]
    metrics: Dict[str, str]
    metric_labels: Dict[str, str]
    variants: Dict[str, List[str]] = field(default_factory=lambda: {'default': []})
    comparisons: Tuple[Tuple[str, str, str], ...] = ()
    own_comparisons: Tuple[Tuple[str, str, str], ...] = ()
    epochs: int = 8
    checkpoint_every: Optional[int] = None
    axis: str = ''
    title: str = ''
    results: str = 'sharing_study'
    page: str = 'docs/studies/sharing.md'

    @property
    def by_key(self) -> Dict[str, Cell]:
        return {c.key: c for c in self.cells}

    @property
    def main(self) -> str:
        """The CSV column of the main metric."""
        return next(iter(self.metrics))


def _shapes_cell(key: str, label: str, backbone: str, regularizer: bool) -> Cell:
    return Cell(key, label, f'shapes/faster-rcnn_{backbone}_slim-fpn_scratch-8e_shapes.py', regularizer)


_HARD = [
    f'{loader}.dataset.{key}'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    for key in ('variant=hard', 'max_objects=10', 'data_root=data/shapes_hard/')
] + [
    'val_evaluator.ann_file=data/shapes_hard/val/annotation.json',
    'test_evaluator.ann_file=data/shapes_hard/val/annotation.json',
    'model.roi_head.bbox_head.num_classes=6',
]
COCO_METRICS = {'bbox_mAP': 'coco/bbox_mAP', 'bbox_mAP_50': 'coco/bbox_mAP_50', 'bbox_mAP_75': 'coco/bbox_mAP_75'}
COCO_LABELS = {'bbox_mAP': 'bbox mAP', 'bbox_mAP_50': 'mAP@0.5', 'bbox_mAP_75': 'mAP@0.75'}

#: The generated shapes data: Faster R-CNN from scratch, every backbone with the same neck, heads and schedule.
SHAPES = Grid(
    name='shapes',
    cells=(
        _shapes_cell('r18', 'ResNet-18', 'r18', False),
        _shapes_cell('r18-s16u1', 'ResNet-18 S16U1', 'r18-s16u1', True),
        _shapes_cell('r18-s16u1-noreg', 'ResNet-18 S16U1', 'r18-s16u1', False),
        _shapes_cell('r34', 'ResNet-34', 'r34', False),
        _shapes_cell('r34-s48u1star', 'ResNet34-S48U1*', 'r34-s48u1star', True),
        _shapes_cell('r34-s48u1star-noreg', 'ResNet34-S48U1*', 'r34-s48u1star', False),
        _shapes_cell('r34-s16u1star', 'ResNet34-S16U1*', 'r34-s16u1star', True),
        # hardware-aligned variants (ours, not the paper's): total ranks multiples of 16
        _shapes_cell('r34-s47u1star', 'ResNet34-S47U1* (aligned)', 'r34-s47u1star', True),
        _shapes_cell('r34-s15u1star', 'ResNet34-S15U1* (aligned)', 'r34-s15u1star', True),
    ),
    metrics=COCO_METRICS,
    metric_labels=COCO_LABELS,
    variants={'default': [], 'hard': _HARD},
    comparisons=(
        ('r18-s16u1', 'r18', 'sharing, ResNet-18'),
        ('r34-s48u1star', 'r34', 'sharing, ResNet-34 (S48U1*)'),
        ('r34-s16u1star', 'r34', 'sharing, ResNet-34 (S16U1*)'),
        ('r18-s16u1', 'r18-s16u1-noreg', 'the regulariser, ResNet-18 S16U1'),
        ('r34-s48u1star', 'r34-s48u1star-noreg', 'the regulariser, ResNet34-S48U1*'),
    ),
    own_comparisons=(
        ('r34-s47u1star', 'r34-s48u1star', 'aligned ranks, S47U1* (ours) vs S48U1* (paper)'),
        ('r34-s15u1star', 'r34-s16u1star', 'aligned ranks, S15U1* (ours) vs S16U1* (paper)'),
    ),
    epochs=8,
    axis='COCO bbox mAP (shapes val)',
    title='Faster R-CNN from scratch on the shapes data, {epochs} epochs: mean ± std over seeds',
)


def _trees_cell(key: str, label: str, config: str, regularizer: bool) -> Cell:
    return Cell(key, label, f'deepforest/{config}_trees.py', regularizer)


#: The real-image trees (deepforest: tiles of real aerial images, Pascal VOC XML; docs/studies/real_images.md):
#: Faster R-CNN (FPN), SSD and RetinaNet from scratch, each shared-basis config next to its plain twin. The metrics
#: are those of the configs' evaluators: VOC mAP (IoU 0.5) first, then COCO's, small and medium objects included.
TREES = Grid(
    name='trees',
    cells=(
        _trees_cell('r18', 'ResNet-18', 'faster-rcnn_r18_slim-fpn_scratch-16e', False),
        _trees_cell('r18-s16u1', 'ResNet-18 S16U1', 'faster-rcnn_r18-s16u1_slim-fpn_scratch-16e', True),
        _trees_cell('r34', 'ResNet-34', 'faster-rcnn_r34_slim-fpn_scratch-16e', False),
        _trees_cell('r34-s48u1star', 'ResNet34-S48U1*', 'faster-rcnn_r34-s48u1star_slim-fpn_scratch-16e', True),
        _trees_cell('r34-s48u1star-noreg', 'ResNet34-S48U1*', 'faster-rcnn_r34-s48u1star_slim-fpn_scratch-16e', False),
        _trees_cell('r34-s16u1star', 'ResNet34-S16U1*', 'faster-rcnn_r34-s16u1star_slim-fpn_scratch-16e', True),
        _trees_cell('ssd-r34', 'SSD ResNet-34', 'ssd_r34_scratch-16e', False),
        _trees_cell('ssd-r34-s48u1star', 'SSD ResNet34-S48U1*', 'ssd_r34-s48u1star_scratch-16e', True),
        _trees_cell('retina-r34', 'RetinaNet ResNet-34', 'retinanet_r34_slim-fpn_scratch-16e', False),
        _trees_cell(
            'retina-r34-s48u1star', 'RetinaNet ResNet34-S48U1*', 'retinanet_r34-s48u1star_slim-fpn_scratch-16e', True
        ),
    ),
    metrics={
        'voc_mAP': 'pascal_voc/mAP',
        **COCO_METRICS,
        'bbox_mAP_s': 'coco/bbox_mAP_s',
        'bbox_mAP_m': 'coco/bbox_mAP_m',
    },
    metric_labels={'voc_mAP': 'VOC mAP', **COCO_LABELS, 'bbox_mAP_s': 'mAP small', 'bbox_mAP_m': 'mAP medium'},
    comparisons=(
        ('r18-s16u1', 'r18', 'sharing, ResNet-18'),
        ('r34-s48u1star', 'r34', 'sharing, ResNet-34 (S48U1*)'),
        ('r34-s16u1star', 'r34', 'sharing, ResNet-34 (S16U1*)'),
        ('r34-s48u1star', 'r34-s48u1star-noreg', 'the regulariser, ResNet34-S48U1*'),
        ('ssd-r34-s48u1star', 'ssd-r34', 'sharing, SSD ResNet-34 (S48U1*)'),
        ('retina-r34-s48u1star', 'retina-r34', 'sharing, RetinaNet ResNet-34 (S48U1*)'),
    ),
    epochs=16,
    checkpoint_every=1,  # runs of 30 to 90 minutes: an interrupted one resumes from its last epoch
    axis='VOC mAP (trees test)',
    title='Detectors from scratch on the deepforest trees, {epochs} epochs: mean ± std over seeds',
    results='real_images',
    page='docs/studies/real_images.md',
)

GRIDS: Dict[str, Grid] = {g.name: g for g in (SHAPES, TREES)}
