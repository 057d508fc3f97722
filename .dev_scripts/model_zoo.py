"""Measure the detector zoo and write its model-zoo files (mmdet's metafile format).

    python .dev_scripts/model_zoo.py                  # (re)write the files listed below
    python .dev_scripts/model_zoo.py --check          # write nothing; exit 1 if any of them would change
    python .dev_scripts/model_zoo.py --doc PAGE.md    # the whole zoo's table into PAGE.md (default docs/model_zoo.md)

A maintainer script (OpenMMLab keeps those in ``.dev_scripts/``); ``tools/misc/model_zoo.py`` forwards here.

The zoo is every config under ``configs/faster_rcnn``, ``configs/ssd`` and ``configs/pascal_voc``. Each config is
built (``torch.manual_seed(0)`` first) and measured on CPU:

* ``Parameters`` / ``Backbone Parameters``: ``sum(p.numel() for p in model.parameters())`` (each shared tensor once);
* ``GMACs``: multiply-accumulates of one forward pass in ``'tensor'`` mode at the config's test input size (the test
  pipeline's ``Resize`` scale, padded by the model's data preprocessor, batch 1), counted by mmengine's
  ``FlopAnalyzer`` - the counter behind ``mmengine.analysis.get_model_complexity_info`` (which also traces the
  model a second time for activations; only its FLOP count is used here). For two-stage detectors the RoI head
  runs on ``test_cfg.rpn.max_per_img`` proposals (its worst case; how many survive NMS depends on the weights).

Everything else comes from the config: the backbone's paper name (its ``arch``, see ``mmbasis.models.archs``), the
weights it starts from (``init_cfg``), the training data and the epochs (``max_epochs`` times the dataset repeats).

Written: ``configs/<folder>/metafile.yml`` (Collections + Models), the table between ``<!-- model-zoo:start -->``
and ``<!-- model-zoo:end -->`` of ``configs/<folder>/README.md``, of ``configs/README.md`` and of the docs page
``docs/model_zoo.md`` (the whole zoo; ``--doc``), and ``model-index.yml`` at the repository top (``Import`` of every
metafile).
"""

import argparse
import os.path as osp
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import yaml
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

import mmbasis  # noqa: F401  (registers the backbones and heads)
from mmbasis.models.archs import arch_of
from mmbasis.models.backbones import SHARING_DEFAULTS
from mmbasis.utils.docs import add_doc_option, doc_target, replace_marked_block

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / 'docs' / 'model_zoo.md'
ZOO_FOLDERS = ('faster_rcnn', 'ssd', 'pascal_voc')
MARKER = 'model-zoo'
START, END = f'<!-- {MARKER}:start -->', f'<!-- {MARKER}:end -->'
NOT_TRAINED = 'not trained'
#: ``<plain>-<sharing>[-rest]`` backbone tokens of shared-basis configs, e.g. ``r34-s48u1star-in1k``.
SHARED_TOKEN = re.compile(
    r'^(?P<plain>r\d+|mobilenetv2)-(?P<sharing>s\d+u\d+(?:star)?|shared(?:\+\+)?)'
    r'(?P<rest>-.+)?$'
)


@dataclass(frozen=True)
class Collection:
    """A metafile collection: one detector family trained on one dataset."""

    name: str
    paper_title: str
    paper_url: str
    architecture: Tuple[str, ...]


_FRCNN = (
    'Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks',
    'https://arxiv.org/abs/1506.01497',
)
_SSD = ('SSD: Single Shot MultiBox Detector', 'https://arxiv.org/abs/1512.02325')
_RETINANET = ('Focal Loss for Dense Object Detection', 'https://arxiv.org/abs/1708.02002')
_SSDLITE = ('MobileNetV2: Inverted Residuals and Linear Bottlenecks', 'https://arxiv.org/abs/1801.04381')
#: (folder, algorithm token of the config name) -> collection
COLLECTIONS: Dict[Tuple[str, str], Collection] = {
    ('faster_rcnn', 'faster-rcnn'): Collection('Faster R-CNN', *_FRCNN, ('FPN', 'RPN', 'ResNet', 'RoIAlign')),
    ('ssd', 'ssd300'): Collection('SSD', *_SSD, ('ResNet', 'SSDNeck')),
    ('ssd', 'ssd512'): Collection('SSD', *_SSD, ('ResNet', 'SSDNeck')),
    ('ssd', 'ssdlite'): Collection('SSDLite', *_SSDLITE, ('MobileNetV2', 'SSDNeck', 'Depthwise Separable Conv')),
    ('pascal_voc', 'faster-rcnn'): Collection('Faster R-CNN VOC0712', *_FRCNN, ('FPN', 'RPN', 'ResNet', 'RoIAlign')),
    ('pascal_voc', 'ssd300'): Collection('SSD VOC0712', *_SSD, ('ResNet', 'SSDNeck')),
    ('pascal_voc', 'retinanet'): Collection('RetinaNet VOC0712', *_RETINANET, ('FPN', 'Focal Loss', 'ResNet')),
}
DATASETS = {'CocoDataset': 'COCO', 'VOCDataset': 'PASCAL VOC 07+12'}


# ----------------------------------------------------------------------------------------------------- config facts
def zoo_configs(root: Path = REPO) -> List[Path]:
    """Every zoo config, sorted by folder and name."""
    return [p for folder in ZOO_FOLDERS for p in sorted((root / 'configs' / folder).glob('*.py'))]


def baseline_of(stem: str) -> Optional[str]:
    """The baseline config name of a shared-basis config name (its backbone token without the sharing), else None.

    Example: ``faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco`` -> ``faster-rcnn_r34-in1k_fpn_1x_coco``.
    """
    parts = stem.split('_')
    match = SHARED_TOKEN.match(parts[1]) if len(parts) > 1 else None
    if match is None:
        return None
    parts[1] = match['plain'] + (match['rest'] or '')
    return '_'.join(parts)


def backbone_name(backbone: dict) -> str:
    """Display name: ``ResNet-50``, ``MobileNetV2`` for mmdet's backbones, the paper name (the ``arch``) for shared
    ones; a shared backbone given by explicit arguments must build exactly one paper model."""
    if backbone['type'] == 'ResNet':
        return f'ResNet-{backbone["depth"]}'
    if backbone['type'] == 'MobileNetV2':
        return 'MobileNetV2'
    name = arch_of(backbone, SHARING_DEFAULTS)
    if name is None:
        raise ValueError(f'backbone {backbone} is not a paper model: give it the arch of one')
    return name


def weights_kind(backbone: dict) -> str:
    """Which weights the backbone starts from: in1k torchvision / in1k official / in1k decomposed / scratch."""
    init = backbone.get('init_cfg')
    ckpt = init.get('checkpoint') if isinstance(init, dict) and init.get('type') == 'Pretrained' else None
    if ckpt is None:
        return 'scratch'
    name = osp.basename(ckpt)
    if ckpt.startswith('torchvision://'):
        return 'in1k torchvision'
    if name.startswith('netrl2_'):  # written by tools/model_converters/netrl2_to_mmbasis.py
        return 'in1k official'
    if '-in1k_to_' in name:  # written by tools/model_converters/plain_to_shared.py
        return 'in1k decomposed'
    raise ValueError(
        f'cannot tell which ImageNet weights {ckpt!r} are: expected torchvision://..., netrl2_*.pth '
        '(official, converted) or *-in1k_to_*.pth (decomposed)'
    )


def _innermost_dataset(dataset: dict) -> Tuple[dict, int]:
    """The first leaf dataset of a (Repeat/Concat) dataset config and how often it is repeated."""
    times = 1
    while True:
        if dataset.get('type') == 'RepeatDataset':
            times *= dataset['times']
            dataset = dataset['dataset']
        elif 'datasets' in dataset:
            dataset = dataset['datasets'][0]
        else:
            return dataset, times


def training_facts(cfg: Config) -> Tuple[str, int]:
    """(training data, epochs over the original dataset = max_epochs x repeats)."""
    dataset, times = _innermost_dataset(cfg.train_dataloader.dataset)
    if dataset['type'] not in DATASETS:
        raise ValueError(f'unknown training dataset type {dataset["type"]!r}; known: {", ".join(DATASETS)}')
    return DATASETS[dataset['type']], cfg.train_cfg.max_epochs * times


def test_input_size(cfg: Config) -> Tuple[int, int]:
    """(width, height) of the test pipeline's ``Resize`` scale (the image a test-time resize produces)."""
    dataset, _ = _innermost_dataset(cfg.test_dataloader.dataset)
    resize = [t for t in dataset['pipeline'] if t['type'] == 'Resize']
    if len(resize) != 1 or 'scale' not in resize[0]:
        raise ValueError(f'expected one Resize with a scale in the test pipeline, got {resize}')
    width, height = resize[0]['scale']
    return int(width), int(height)


# ------------------------------------------------------------------------------------------------------ measurement
class _TensorMode(torch.nn.Module):
    """A detector in ``'tensor'`` mode for one fixed batch of data samples (what mmdet's get_flops.py traces)."""

    def __init__(self, detector: torch.nn.Module, data_samples: list) -> None:
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.detector(inputs, self.data_samples, mode='tensor')


def _full_proposals(rpn_head: torch.nn.Module, num: int) -> None:
    """Make ``rpn_head.predict`` return exactly ``num`` proposals per image (repeating them when NMS kept fewer).

    How many proposals survive NMS depends on the weights (random here); the RoI head's cost depends only on their
    number. Measuring at ``test_cfg.rpn.max_per_img``, the most the RPN passes on, makes the GMACs a property of
    the config: the RoI head's worst case.
    """
    predict = rpn_head.predict

    def predict_num(*args, **kwargs):
        results = predict(*args, **kwargs)
        if any(len(r) == 0 for r in results):
            raise RuntimeError('the RPN kept no proposal; cannot measure the RoI head')
        return [r[torch.arange(num, device=r.bboxes.device) % len(r)] for r in results]

    rpn_head.predict = predict_num


def measure(cfg: Config) -> dict:
    """Parameters (detector, backbone), GMACs and the padded input size of ``cfg``'s model on CPU."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    width, height = test_input_size(cfg)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)
    rois: List[int] = []
    if getattr(model, 'rpn_head', None) is not None:
        proposals = cfg.model.test_cfg.rpn.max_per_img
        _full_proposals(model.rpn_head, proposals)
        model.roi_head.bbox_roi_extractor.register_forward_pre_hook(lambda m, args: rois.append(int(args[1].shape[0])))
    with torch.no_grad():
        analyzer = FlopAnalyzer(_TensorMode(model, data['data_samples']), (data['inputs'],))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analyzer.total()
    if rois and rois != [proposals]:
        raise RuntimeError(f'the RoI head ran on {rois} proposals instead of [{proposals}]')
    padded_h, padded_w = data['inputs'].shape[-2:]
    return dict(
        params=sum(p.numel() for p in model.parameters()),
        backbone_params=sum(p.numel() for p in model.backbone.parameters()),
        gmacs=round(macs / 1e9, 3),
        input_size=f'{padded_w}x{padded_h}',
    )


@dataclass
class Entry:
    """One zoo model: where it is, what it is and what was measured."""

    folder: str
    stem: str
    collection: Collection
    backbone: str
    baseline: Optional[str]
    weights: str
    training_data: str
    epochs: int
    input_size: str
    backbone_params: int
    params: int
    gmacs: float


def describe(path: Path) -> Entry:
    """Load, build and measure one zoo config."""
    folder, stem = path.parent.name, path.stem
    algorithm = stem.split('_')[0]
    if (folder, algorithm) not in COLLECTIONS:
        raise ValueError(
            f'{path}: no collection for algorithm {algorithm!r} in configs/{folder}; known: {sorted(COLLECTIONS)}'
        )
    cfg = Config.fromfile(str(path))
    data, epochs = training_facts(cfg)
    m = measure(cfg)
    return Entry(
        folder,
        stem,
        COLLECTIONS[(folder, algorithm)],
        backbone_name(cfg.model.backbone),
        baseline_of(stem),
        weights_kind(cfg.model.backbone),
        data,
        epochs,
        m['input_size'],
        m['backbone_params'],
        m['params'],
        m['gmacs'],
    )


def _natural(text: str) -> tuple:
    """Sort key that orders numbers by value (``r34 < r50 < r101``)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r'(\d+)', text))


def ordered(entries: Sequence[Entry]) -> List[Entry]:
    """Collections in definition order, then by schedule and depth; each baseline followed by its shared-basis
    twins, the least compressed first."""
    rank = {c.name: i for i, c in enumerate(dict.fromkeys(COLLECTIONS.values()))}
    return sorted(
        entries,
        key=lambda e: (
            rank[e.collection.name],
            e.epochs,
            _natural(e.baseline or e.stem),
            e.baseline is not None,
            -e.backbone_params,
            e.stem,
        ),
    )


# ----------------------------------------------------------------------------------------------------------- output
class _IndentDumper(yaml.SafeDumper):
    """YAML with list items indented under their key, as mmdet's metafiles."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def metafile(folder: str, entries: Sequence[Entry]) -> str:
    """``configs/<folder>/metafile.yml``: mmdet's Collections + Models."""
    collections = list(dict.fromkeys(e.collection for e in entries))
    data = dict(
        Collections=[
            dict(
                Name=c.name,
                Metadata={
                    'Training Data': next(e.training_data for e in entries if e.collection == c),
                    'Training Techniques': ['SGD with Momentum', 'Weight Decay', 'Orthogonality Regularization'],
                    'Architecture': list(c.architecture) + ['Deeply Shared Filter Bases'],
                },
                Paper=dict(URL=c.paper_url, Title=c.paper_title),
                README=f'configs/{folder}/README.md',
            )
            for c in collections
        ],
        Models=[model_entry(e) for e in entries],
    )
    header = (
        '# Generated by .dev_scripts/model_zoo.py from the configs of this folder (parameters, GMACs measured);\n'
        '# do not edit by hand: run `python .dev_scripts/model_zoo.py`.\n'
    )
    return header + yaml.dump(data, Dumper=_IndentDumper, sort_keys=False, allow_unicode=True, width=120)


def model_entry(e: Entry) -> dict:
    """One ``Models`` item."""
    meta = {'Backbone': e.backbone}
    if e.baseline is not None:
        meta['Baseline'] = e.baseline
    meta.update(
        {
            'Weights': e.weights,
            'Training Data': e.training_data,
            'Epochs': e.epochs,
            'Input Size': e.input_size,
            'Backbone Parameters': e.backbone_params,
            'Parameters': e.params,
            'GMACs': e.gmacs,
        }
    )
    return {
        'Name': e.stem,
        'In Collection': e.collection.name,
        'Config': f'configs/{e.folder}/{e.stem}.py',
        'Metadata': meta,
        'Results': None,
        'Notes': f'{NOT_TRAINED}: no {e.training_data} training run yet, so no results and no trained weights',
    }


def _delta(value: float, base: Optional[float]) -> str:
    """`` (-47.0 %)``: the change against the baseline's value, or nothing without a baseline."""
    return '' if base is None or base == 0 else f' ({(value - base) / base * 100:+.1f} %)'


def table(entries: Sequence[Entry], link: Callable[[Entry], str]) -> str:
    """The markdown table of ``entries``, each config linked as ``link(entry)``; shared rows show the change against
    their baseline."""
    by_stem = {e.stem: e for e in entries}
    lines = [
        '| Config | Backbone | Backbone weights | Data | Epochs | Input (padded) | Backbone params | Params | '
        'GMACs | Result |',
        '|---|---|---|---|---|---|---:|---:|---:|---|',
    ]
    for e in entries:
        base = by_stem.get(e.baseline) if e.baseline else None
        lines.append(
            f'| [{e.stem}]({link(e)}) | {e.backbone.replace("*", chr(92) + "*")} | {e.weights} | '
            f'{e.training_data} | {e.epochs} | {e.input_size} | '
            f'{e.backbone_params:,}{_delta(e.backbone_params, base.backbone_params if base else None)} | '
            f'{e.params:,}{_delta(e.params, base.params if base else None)} | '
            f'{e.gmacs:.3f}{_delta(e.gmacs, base.gmacs if base else None)} | {NOT_TRAINED} |'
        )
    return '\n'.join(lines)


def with_table(readme: str, path: Path, new_table: str) -> str:
    """``readme`` with the text between the zoo markers replaced by ``new_table``."""
    return replace_marked_block(readme, MARKER, new_table, where=str(path))


def model_index(folders: Sequence[str]) -> str:
    """The top-level ``model-index.yml``."""
    body = yaml.dump({'Import': [f'configs/{f}/metafile.yml' for f in folders]}, Dumper=_IndentDumper, sort_keys=False)
    return '# Generated by .dev_scripts/model_zoo.py: the metafile of every model-zoo folder.\n' + body


def outputs(entries: Sequence[Entry], root: Path = REPO, doc: Optional[Path] = None) -> Dict[Path, str]:
    """Every written file and its new content (``doc``: the page of the whole zoo, default ``docs/model_zoo.md``)."""
    files: Dict[Path, str] = {}
    for folder in ZOO_FOLDERS:
        mine = ordered([e for e in entries if e.folder == folder])
        files[root / 'configs' / folder / 'metafile.yml'] = metafile(folder, mine)
        readme = root / 'configs' / folder / 'README.md'
        files[readme] = with_table(_read(readme), readme, table(mine, lambda e: f'./{e.stem}.py'))
    overall = root / 'configs' / 'README.md'
    everything = [e for folder in ZOO_FOLDERS for e in ordered([e for e in entries if e.folder == folder])]
    files[overall] = with_table(_read(overall), overall, table(everything, lambda e: f'./{e.folder}/{e.stem}.py'))
    page = doc or root / 'docs' / 'model_zoo.md'
    link = osp.relpath(root / 'configs', page.resolve().parent)
    files[page] = with_table(_read(page), page, table(everything, lambda e: f'{link}/{e.folder}/{e.stem}.py'))
    files[root / 'model-index.yml'] = model_index(ZOO_FOLDERS)
    return files


def _read(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(
            f'{path} does not exist: create it with the lines {START} and {END} where the table goes'
        )
    return path.read_text(encoding='utf-8')


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# ------------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Measure the detector zoo and write metafiles, README tables and model-index.yml'
    )
    parser.add_argument(
        '--check', action='store_true', help='write nothing; exit 1 when a file would change (for tests and CI)'
    )
    add_doc_option(parser, str(DOC.relative_to(REPO)), 'the table of the whole zoo', always=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    MMLogger.get_instance('mmengine', log_level='WARNING')
    configs = zoo_configs()
    if not configs:
        print(f'error: no configs under configs/{{{",".join(ZOO_FOLDERS)}}}', file=sys.stderr)
        return 1
    entries = []
    for i, path in enumerate(configs, 1):
        try:
            e = describe(path)
        except (KeyError, ValueError, RuntimeError, FileNotFoundError) as err:
            print(f'error: {path.relative_to(REPO)}: {err}', file=sys.stderr)
            return 1
        entries.append(e)
        print(
            f'[{i}/{len(configs)}] {e.folder}/{e.stem}: {e.params:,} params, {e.gmacs:.3f} GMACs at {e.input_size}',
            file=sys.stderr,
        )
    try:
        doc = doc_target(args)
        files = outputs(entries, doc=DOC if doc == str(DOC.relative_to(REPO)) else Path(doc).resolve())
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding='utf-8') != text]
    if args.check:
        for p in stale:
            print(f'error: {_shown(p)} is out of date: run python .dev_scripts/model_zoo.py', file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(files[p], encoding='utf-8')
        print(f'wrote {_shown(p)}', file=sys.stderr)
    if not stale:
        print('every model-zoo file is up to date', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
