"""Every shared-basis config differs from its plain baseline only in the backbone (and the regulariser hook).

A pair is named after its backbone token: ``faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco.py`` is the twin of
``faster-rcnn_r34-in1k_fpn_1x_coco.py`` (``.dev_scripts/model_zoo.py``'s ``baseline_of``). Both configs are flattened
(``model.backbone.norm_cfg.type`` ...); everything outside ``model.backbone`` must be equal - data, schedule,
optimizer, neck, heads, runtime - except the shared one's backbone variables (``shared_backbone``,
``in1k_checkpoint``) and its ``custom_hooks``, which must be the baseline's plus the regulariser.
"""

from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from mmengine.config import Config

from tests.helpers import REGULARISER, load_tool

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / 'configs'
CONFIGS = sorted(p for p in ROOT.rglob('*.py') if '_base_' not in p.parts)
baseline_of = load_tool('.dev_scripts/model_zoo.py').baseline_of
PAIRS: List[Tuple[Path, Path]] = [
    (p, p.with_name(f'{baseline_of(p.stem)}.py')) for p in CONFIGS if baseline_of(p.stem) is not None
]
BACKBONE_VARIABLES = ('shared_backbone', 'in1k_checkpoint')  # defined by configs/_base_/backbones/*.py


def flatten(value, prefix: str = '') -> Dict[str, object]:
    """``{'a.b.0.c': leaf}`` for nested dicts and lists/tuples (empty containers are leaves)."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in flatten(item, f'{prefix}{key}.').items()}
    if isinstance(value, (list, tuple)) and value:
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f'{prefix}{i}.').items()}
    return {prefix[:-1]: value}


def test_pairs_exist():
    folders = [p.parent.name for p, _ in PAIRS]
    # faster_rcnn: 5 ImageNet + 1 scratch; ssd: SSD300 x2, SSD512, SSDLite x2; pascal_voc: 2 Faster R-CNN + SSD300 +
    # RetinaNet; shapes: Faster R-CNN S16U1, the paper S48U1* and S16U1*, the aligned S47U1* and S15U1*, SSD300 with
    # the same four ResNet-34 variants; deepforest: 3 Faster R-CNN + SSD + RetinaNet
    assert {f: folders.count(f) for f in set(folders)} == dict(
        faster_rcnn=6, ssd=5, pascal_voc=4, shapes=9, deepforest=5
    )
    missing = [b.relative_to(ROOT).as_posix() for _, b in PAIRS if not b.is_file()]
    assert not missing, f'shared-basis configs without their baseline: {missing}'


def test_every_baseline_has_a_shared_twin():
    baselines = {b for _, b in PAIRS}
    lonely = [p.relative_to(ROOT).as_posix() for p in CONFIGS if baseline_of(p.stem) is None and p not in baselines]
    assert not lonely, f'baselines without a shared-basis twin: {lonely}'


@pytest.mark.parametrize('shared, baseline', PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_pair_differs_only_in_the_backbone(shared, baseline):
    a, b = Config.fromfile(str(shared)), Config.fromfile(str(baseline))
    assert a.custom_hooks == b.custom_hooks + [REGULARISER]
    assert b.get('shared_backbone') is None and not any(h['type'] == REGULARISER['type'] for h in b.custom_hooks)

    def rest(cfg: Config) -> Dict[str, object]:
        flat = flatten(cfg.to_dict())
        return {
            k: v
            for k, v in flat.items()
            if not k.startswith(('model.backbone.', 'custom_hooks.')) and k.split('.')[0] not in BACKBONE_VARIABLES
        }

    ra, rb = rest(a), rest(b)
    diff = sorted(k for k in ra.keys() | rb.keys() if ra.get(k, '<missing>') != rb.get(k, '<missing>'))
    assert not diff, f'{shared.name} differs from {baseline.name} outside the backbone: ' + ', '.join(
        f'{k}: {ra.get(k, "<missing>")!r} vs {rb.get(k, "<missing>")!r}' for k in diff[:8]
    )


@pytest.mark.parametrize('shared, baseline', PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_shared_backbone_is_the_baselines_with_the_sharing(shared, baseline):
    """The shared backbone = the baseline's arguments (stages, freezing, norms, outputs) + the sharing arguments
    (+ the converted ImageNet checkpoint for ``-in1k`` configs)."""
    a, b = Config.fromfile(str(shared)), Config.fromfile(str(baseline))
    expected = dict(b.model.backbone.to_dict(), **a.shared_backbone.to_dict())
    if '-in1k' in shared.stem:
        expected['init_cfg'] = dict(type='Pretrained', checkpoint=a.in1k_checkpoint)
    assert a.model.backbone.to_dict() == expected
