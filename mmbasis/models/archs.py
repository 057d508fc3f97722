"""The paper's ImageNet models, keyed by arch name: the one home of their definitions and facts.

A backbone takes a paper model by name, in the OpenMMLab ``arch`` idiom (as mmpretrain's
``RepVGG(arch='A0')``)::

    backbone = dict(type='SharedBasisResNet', arch='ResNet34-S48U1*')
    backbone = dict(type='SharedBasisMobileNetV2', arch='MobileNetV2-Shared++', variant='mmdet')

The arch sets the sharing arguments (depth, ranks, which convolutions share bases, ...); every other argument is
given as usual, and an explicit sharing argument replaces the arch's, as a config key overrides an inherited one
(:func:`resolve_arch`; the backbone's ``arch`` is then None: it is no longer that paper model). Models that are not
the paper's (other ranks, e.g. the hardware-aligned S47U1*) are built from explicit arguments and are not in this
table.

Every fact mmbasis relies on about a paper model lives in its :class:`PaperModel` row: the sharing arguments that
build it, the official constructor whose checkpoints load into it, the counts the official code gives (backbone
only: stem, every BN and, for MobileNetV2, the 1280-channel conv; no classifier; each shared tensor counted once)
and the official ImageNet recipe. Sources and derivations: ``docs/paper_notes.md``.
"""

import copy
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

RESNET = 'SharedBasisResNet'
MOBILENET = 'SharedBasisMobileNetV2'
_R34 = dict(depth=34, rank_multipliers=(1, 2, 4, 8))
_MBV2 = dict(shared_stages=(2, 3, 4, 5))


@dataclass(frozen=True)
class PaperModel:
    """One paper model.

    Attributes:
        name: paper name, e.g. ``'ResNet34-S48U1*'``: the ``arch`` of the backbone.
        type: the registered backbone class, ``'SharedBasisResNet'`` or ``'SharedBasisMobileNetV2'``.
        settings: the sharing arguments the arch sets (those that differ from the defaults).
        official_class: the constructor in ``ssregibility/Net_RL2/models/ilsvrc`` (the code names
            ResNet50/MobileNetV2 "Shared" and "Shared++" the other way round: ``ResNet50_SharedSingle`` is
            the paper's ResNet50-Shared).
        params: backbone-only parameter count of the official model.
        full_params: parameter count of the official ImageNet model, classifier included (the official README's
            parameter column).
        shared_params: parameters in the shared bases (counted once).
        bases_per_family: shared bases per regulariser family (e.g. ``{'conv3x3': 8}``).
        stage3_uses: how many convolutions use one stage-3 basis (the depth of the recursion).
        plain: the plain counterpart (mmdet backbone config).
        top1_err: published ImageNet top-1 error in %, when published.
        weight_decay: the official ImageNet recipe's weight decay (SGD, applied to every parameter
            including the shared bases).
    """

    name: str
    type: str
    settings: dict
    official_class: str
    params: int
    full_params: int
    shared_params: int
    bases_per_family: Dict[str, int]
    stage3_uses: int
    plain: dict
    top1_err: Optional[float] = None
    weight_decay: Optional[float] = None
    notes: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def backbone(self) -> dict:
        """The backbone config in explicit form: ``type`` and the sharing arguments (a new dict each time)."""
        return dict(type=self.type, **copy.deepcopy(self.settings))


_PLAIN_R34 = dict(type='ResNet', depth=34)
_PLAIN_MBV2 = dict(type=MOBILENET, variant='official', shared_convs=())


#: (shared rank, star) -> official parameter counts (backbone only, full ImageNet model) of ResNet34-S{s}U1[*]
_R34_COUNTS = {
    (48, True): (11_273_968, 11_786_968),
    (32, True): (9_249_776, 9_762_776),
    (16, True): (7_225_584, 7_738_584),
    (48, False): (8_923_888, 9_436_888),
    (32, False): (7_683_056, 8_196_056),
    (16, False): (6_442_224, 6_955_224),
}


def _r34(s: int, star: bool, top1_err: Optional[float] = None, wd: Optional[float] = None) -> PaperModel:
    """ResNet34-S{s}U1[*]: stage ranks (s, 1) x (1, 2, 4, 8); ``*`` = one basis per conv position."""
    bases = 2 if star else 1
    # stage i: `bases` bases of (s * 2**i) x (64 * 2**i) x 3 x 3
    shared = bases * s * 64 * 9 * sum(4**i for i in range(4))
    return PaperModel(
        name=f'ResNet34-S{s}U1{"*" if star else ""}',
        type=RESNET,
        settings=dict(_R34, shared_rank=s, unique_rank=1, basis_sharing='conv' if star else 'stage'),
        official_class=f'ResNet34_{"Double" if star else "Single"}Shared({s}, 1)',
        params=_R34_COUNTS[(s, star)][0],
        full_params=_R34_COUNTS[(s, star)][1],
        shared_params=shared,
        bases_per_family={'conv3x3': 4 * bases},
        stage3_uses=5 if star else 10,
        plain=_PLAIN_R34,
        top1_err=top1_err,
        weight_decay=wd,
    )


_MODELS = (
    _r34(48, True, top1_err=26.67, wd=1e-4),
    _r34(32, True),
    _r34(16, True),
    _r34(48, False),
    _r34(32, False),
    _r34(16, False),
    PaperModel(
        'ResNet50-Shared',
        RESNET,
        dict(depth=50, shared_convs=('conv2',)),
        'ResNet50_SharedSingle()',
        18_457_664,
        20_506_664,
        3_133_440,
        {'conv3x3': 4},
        5,
        dict(type='ResNet', depth=50),
        top1_err=23.64,
        weight_decay=4e-5,
        notes=('weight decay 4e-5 per the official README at HEAD; an earlier README said 1e-4',),
    ),
    PaperModel(
        'ResNet50-Shared++',
        RESNET,
        dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv'),
        'ResNet50_Shared()',
        16_213_056,
        18_262_056,
        4_526_080,
        {'conv3x3': 4, 'conv1x1': 4},
        5,
        dict(type='ResNet', depth=50),
        top1_err=23.95,
        weight_decay=1e-4,
    ),
    PaperModel(
        'ResNet101-Shared',
        RESNET,
        dict(depth=101, shared_convs=('conv2',)),
        'ResNet101_SharedSingle()',
        27_422_784,
        29_471_784,
        3_133_440,
        {'conv3x3': 4},
        22,
        dict(type='ResNet', depth=101),
        top1_err=22.31,
        weight_decay=1e-4,
    ),
    PaperModel(
        'MobileNetV2-Shared',
        MOBILENET,
        dict(_MBV2, shared_convs=('expand_conv',)),
        'MobileNetV2_Shared()',
        1_962_080,
        3_243_080,
        239_616,
        {'expand_conv': 4},
        2,
        _PLAIN_MBV2,
        top1_err=27.61,
        weight_decay=1e-5,
    ),
    PaperModel(
        'MobileNetV2-Shared++',
        MOBILENET,
        dict(_MBV2, shared_convs=('expand_conv', 'linear_conv')),
        'MobileNetV2_SharedDouble() built with BlockSharedDouble (code before March 2021, no ECA)',
        1_697_888,
        2_978_888,
        479_232,
        {'expand_conv': 4, 'linear_conv': 4},
        2,
        _PLAIN_MBV2,
        top1_err=28.21,
        weight_decay=1e-5,
        notes=('the published result predates the ECA module the official code added in March 2021',),
    ),
    PaperModel(
        'MobileNetV2-Shared++-ECA',
        MOBILENET,
        dict(_MBV2, shared_convs=('expand_conv', 'linear_conv'), with_eca=True),
        'MobileNetV2_SharedDouble() at HEAD (BlockSharedDoubleAttention, ECA)',
        1_697_905,
        2_978_905,
        479_232,
        {'expand_conv': 4, 'linear_conv': 4},
        2,
        _PLAIN_MBV2,
        weight_decay=1e-5,
        notes=('loads checkpoints of the official code at HEAD (17 ECA parameters)',),
    ),
)

PAPER_MODELS: Dict[str, PaperModel] = {m.name: m for m in _MODELS}
PAPER_MODEL_NAMES: Tuple[str, ...] = tuple(PAPER_MODELS)


def paper_model(name: str) -> PaperModel:
    """The :class:`PaperModel` row of ``name``; ``KeyError`` listing the known names otherwise."""
    if name not in PAPER_MODELS:
        raise KeyError(f'unknown paper model {name!r}; known names: {", ".join(PAPER_MODEL_NAMES)}')
    return PAPER_MODELS[name]


def paper_backbone_cfg(name: str) -> dict:
    """Backbone config dict of the paper model ``name`` in explicit form (a new copy each call); the short form is
    ``dict(type=..., arch=name)``.

    Example:
        >>> cfg = paper_backbone_cfg('ResNet34-S48U1*')
        >>> cfg['type'], cfg['shared_rank'], cfg['basis_sharing']
        ('SharedBasisResNet', 48, 'conv')
    """
    return paper_model(name).backbone


def _same(a, b) -> bool:
    """Equal, with lists and tuples alike (configs turn tuples into lists)."""

    def norm(v):
        return tuple(v) if isinstance(v, (list, tuple)) else v

    return norm(a) == norm(b)


def resolve_arch(
    backbone: str, arch: Optional[str], given: Mapping[str, object], defaults: Mapping[str, object]
) -> Tuple[dict, Optional[str]]:
    """The sharing arguments of a ``backbone`` built with ``arch`` (or None) and the explicit arguments ``given``,
    and the paper model they build.

    The arch's settings replace the ``defaults``; explicit arguments replace both (as a config that inherits one
    and overrides a key: ``arch='ResNet34-S48U1*', basis_sharing='stage'`` is the paper's ResNet34-S48U1). Returns
    ``(settings, arch)`` where ``arch`` is None when an explicit argument changed one of the arch's settings (the
    backbone is then another model than the one named).

    Raises:
        ValueError: an unknown arch, or an arch of another backbone type.
    """
    if arch is None:
        return {**defaults, **given}, None
    row = PAPER_MODELS.get(arch) if isinstance(arch, str) else None
    if row is None or row.type != backbone:
        mine = [n for n, m in PAPER_MODELS.items() if m.type == backbone]
        raise ValueError(f'arch={arch!r} is not allowed for {backbone}: choose one of {", ".join(mine)}')
    changed = [k for k, v in given.items() if k in row.settings and not _same(v, row.settings[k])]
    return {**defaults, **copy.deepcopy(row.settings), **given}, None if changed else arch


def expand_arch(backbone: Mapping) -> dict:
    """``backbone`` (a config dict) with its ``arch`` replaced by the sharing arguments it stands for (a copy)."""
    cfg = copy.deepcopy(dict(backbone))
    if cfg.get('type') not in (RESNET, MOBILENET) or cfg.get('arch') is None:
        return cfg  # another library's backbone keeps its own arch
    row = paper_model(cfg.pop('arch'))
    return {**copy.deepcopy(row.settings), **cfg}  # explicit arguments over the arch's


def arch_of(backbone: Mapping, defaults: Mapping[str, Mapping[str, object]]) -> Optional[str]:
    """The paper model a backbone config builds: the one row whose sharing arguments equal the config's (its
    ``arch`` expanded, explicit arguments over it, the class ``defaults`` ``{type: {argument: default}}`` filled
    in), else None."""
    kind = backbone.get('type')
    if kind not in defaults:
        return None

    def full(cfg: Mapping) -> dict:
        return {k: cfg.get(k, d) for k, d in defaults[kind].items()}

    mine = full(expand_arch(backbone))
    found = [
        n
        for n, m in PAPER_MODELS.items()
        if m.type == kind and all(_same(v, full(m.settings)[k]) for k, v in mine.items())
    ]
    return found[0] if len(found) == 1 else None


#: Arguments of mmbasis' backbones that a plain counterpart does not take.
_SHARING_ARGS = (
    'shared_rank',
    'unique_rank',
    'rank_multipliers',
    'basis_sharing',
    'shared_convs',
    'deploy',
    'deploy_forms',
    'shared_stages',
    'with_eca',
    'arch',
)


def plain_counterpart(backbone: dict) -> dict:
    """The plain backbone config a shared-basis one replaces (same depth, widths, stages and options).

    ``SharedBasisResNet`` -> mmdet's ``ResNet``; ``SharedBasisMobileNetV2`` -> the same class without sharing
    (its layout, ``variant``, is kept). A config of another type is returned unchanged.
    """
    cfg = expand_arch(backbone)
    kind = cfg.get('type')
    if kind == 'SharedBasisResNet':
        cfg['type'] = 'ResNet'
        for name in _SHARING_ARGS:
            cfg.pop(name, None)
    elif kind == 'SharedBasisMobileNetV2':
        for name in _SHARING_ARGS:
            cfg.pop(name, None)
        cfg['shared_convs'] = ()
    return cfg
