"""Official Net_RL2 ImageNet checkpoints (github ``ssregibility/Net_RL2``) read into mmbasis backbones.

SRC is a checkpoint of github.com/ssregibility/Net_RL2 (``{'net_state_dict': ...}`` as written by its
``train_ilsvrc.py``, keys possibly prefixed ``module.``) or a plain state dict. It is read with
``torch.load(weights_only=True)``, the classifier is dropped, keys are renamed to mmbasis' (mapping
below) and checked against the backbone ``paper_backbone_cfg(NAME)``.
DST (never SRC) is written atomically as ``dict(state_dict=..., meta=...)`` with keys relative to the
backbone. Use it as the backbone's own init config in a detector config::

    model = dict(
        backbone=dict(
            _delete_=True, type='SharedBasisResNet', depth=34, shared_rank=48, unique_rank=1,
            basis_sharing='conv',                       # = paper_backbone_cfg('ResNet34-S48U1*')
            init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet34-s48u1x_mmbasis.pth')),
        neck=dict(in_channels=[64, 128, 256, 512]))

(no ``prefix``: the keys already belong to the backbone). The command is
``tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch NAME``. Paper names (``--arch``): ResNet34-S{48,32,16}U1*,
ResNet34-S{48,32,16}U1, ResNet50-Shared, ResNet50-Shared++, ResNet101-Shared, MobileNetV2-Shared,
MobileNetV2-Shared++ (official code before March 2021) and MobileNetV2-Shared++-ECA (HEAD, with ECA).

The official code (github ``ssregibility/Net_RL2``, ``models/ilsvrc/{resnet,mobilenetv2}.py``) saves
``{'net_state_dict': net.state_dict(), 'optimizer_state_dict': ..., 'acc': ..., 'epoch': ...}``, with keys
prefixed ``module.`` when trained under ``DataParallel``. Its shared bases are ``nn.Conv2d`` modules
registered on the network *and* on every block that uses them, so each shared tensor appears several
times (``shared_basis_3_1.weight``, ``layer3.1.shared_basis_1.weight``, ...). mmbasis registers each
shared tensor once, on its stage.

Key mapping (official -> mmbasis; ``i`` stage, ``j`` block):

ResNet (``ResNet34_SingleShared/DoubleShared``, ``ResNet50/101_SharedSingle``, ``ResNet50_Shared``)
    ``conv1``, ``bn1`` -> same (stem); ``layer{i}.{j}.conv{k}/bn{k}`` -> same;
    ``layer{i}.{j}.shortcut.{0,1}`` -> ``layer{i}.{j}.downsample.{0,1}``;
    factorised blocks: ``basis_conv{k}.weight`` -> ``conv{k}.basis.unique_basis``,
    ``basis_bn{k}`` -> ``conv{k}.basis_norm``, ``coeff_conv{k}.weight`` -> ``conv{k}.coeff.weight``;
    one basis per stage: ``shared_basis_{i}.weight`` (and the block copies ``layer{i}.{j}.shared_basis``)
    -> ``layer{i}.shared_basis``; two per stage: ``shared_basis_{i}_{n}.weight`` (and block copies
    ``shared_basis_{n}``) -> ``layer{i}.shared_basis_{c}`` with ``c`` the n-th shared conv of the block
    (``conv1``/``conv2`` for ResNet34 ``*``, ``conv2``/``conv3`` for ResNet50-Shared++).
MobileNetV2 (``MobileNetV2_Shared``, ``MobileNetV2_SharedDouble``)
    ``pre.0``/``pre.1`` -> ``conv1.conv``/``conv1.bn``; ``conv1.0``/``conv1.1`` -> ``conv2.conv``/``conv2.bn``;
    ``stage1``/``stage7`` -> ``layer1.0``/``layer7.0``; ``stage{i}.{j}`` -> ``layer{i}.{j}``; in a block
    ``conv1/bn1`` -> ``expand_conv.conv/bn``, ``conv2/bn2`` -> ``depthwise_conv.conv/bn``,
    ``conv3/bn3`` -> ``linear_conv.conv/bn``, ``chan_attention.conv`` -> ``eca.conv``;
    ``shared_basis_{n}`` / ``shared_basis_{n}_1`` (and block copies ``shared_basis1``) ->
    ``layer{n+2}.shared_basis_expand_conv``; ``shared_basis_{n}_2`` (``shared_basis2``) ->
    ``layer{n+2}.shared_basis_linear_conv``.

The classifier (``fc``, ``classifier``, CIFAR ``linear``) is dropped.
"""

import re
from collections import OrderedDict
from functools import cache
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from mmdet.registry import MODELS
from torch import Tensor

from ..utils.checkpoint_io import CheckpointFormatError, load_weights_only, strip_module_prefix
from ..utils.misc import brief
from ..utils.state_dict import compare_keys
from ..version import __version__
from .archs import PAPER_MODELS, paper_backbone_cfg

#: Paper name -> official constructor (``models/ilsvrc``) whose checkpoints the converter reads.
NETRL2_ARCHS: Dict[str, str] = {name: m.official_class for name, m in PAPER_MODELS.items()}

_CLASSIFIER = re.compile(r'^(fc|classifier|linear)\.')

# A rule maps the groups of its regex to an mmbasis key; ``alias`` marks copies of a shared tensor.
_Rule = Tuple['re.Pattern', Callable[['re.Match'], str], bool]


class NetRL2ConversionError(CheckpointFormatError):
    """The checkpoint does not fit the requested arch (the message names the offending keys)."""


def _check_arch(arch: str) -> None:
    if not isinstance(arch, str) or arch not in NETRL2_ARCHS:
        raise ValueError(f'unknown arch {arch!r}; known archs: {", ".join(NETRL2_ARCHS)}')


# ---------------------------------------------------------------------------------------------- target side
@cache
def _target(arch: str) -> Tuple[Tuple[Tuple[str, Tuple[int, ...]], ...], Tuple[str, ...], str, Tuple[int, ...], bool]:
    """Build the mmbasis backbone of ``arch`` on the meta device (no memory, no init cost).

    Returns ``((key, shape), ...)`` of its state dict, its shared convs, its basis sharing mode, its shared
    stages (MobileNetV2) and whether it has ECA.
    """
    with torch.device('meta'):
        model = MODELS.build(paper_backbone_cfg(arch))
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return (
        shapes,
        tuple(model.shared_convs),
        getattr(model, 'basis_sharing', ''),
        tuple(getattr(model, 'shared_stages', ())),
        bool(getattr(model, 'with_eca', False)),
    )


def expected_shapes(arch: str) -> 'OrderedDict[str, Tuple[int, ...]]':
    """Key -> shape of the state dict of the mmbasis backbone ``paper_backbone_cfg(arch)``."""
    _check_arch(arch)
    return OrderedDict(_target(arch)[0])


# ---------------------------------------------------------------------------------------------- rules
def _resnet_rules(shared_convs: Tuple[str, ...], sharing: str) -> List[_Rule]:
    blk = r'^layer(\d)\.(\d+)\.'
    rules: List[_Rule] = [
        (re.compile(r'^(conv1\.weight|bn1\.\w+)$'), lambda m: m[1], False),
        (
            re.compile(blk + r'shortcut\.([01])\.(\w+)$'),
            lambda m: f'layer{m[1]}.{m[2]}.downsample.{m[3]}.{m[4]}',
            False,
        ),
        (re.compile(blk + r'((?:conv|bn)[123]\.\w+)$'), lambda m: f'layer{m[1]}.{m[2]}.{m[3]}', False),
        (
            re.compile(blk + r'basis_conv([12])\.weight$'),
            lambda m: f'layer{m[1]}.{m[2]}.conv{m[3]}.basis.unique_basis',
            False,
        ),
        (
            re.compile(blk + r'basis_bn([12])\.(\w+)$'),
            lambda m: f'layer{m[1]}.{m[2]}.conv{m[3]}.basis_norm.{m[4]}',
            False,
        ),
        (
            re.compile(blk + r'coeff_conv([12])\.weight$'),
            lambda m: f'layer{m[1]}.{m[2]}.conv{m[3]}.coeff.weight',
            False,
        ),
    ]
    if sharing == 'stage':
        rules += [
            (re.compile(r'^shared_basis_(\d)\.weight$'), lambda m: f'layer{m[1]}.shared_basis', False),
            (re.compile(blk + r'shared_basis\.weight$'), lambda m: f'layer{m[1]}.shared_basis', True),
        ]
    else:

        def conv_basis(stage: str, n: str) -> str:
            n = int(n)
            # an index beyond the shared convs names a key the backbone does not have -> reported as unexpected
            name = shared_convs[n - 1] if 1 <= n <= len(shared_convs) else f'official_{n}'
            return f'layer{stage}.shared_basis_{name}'

        rules += [
            (re.compile(r'^shared_basis_(\d)_(\d)\.weight$'), lambda m: conv_basis(m[1], m[2]), False),
            (re.compile(blk + r'shared_basis_(\d)\.weight$'), lambda m: conv_basis(m[1], m[3]), True),
        ]
    return rules


_MBV2_BLOCK = {
    'conv1': 'expand_conv.conv',
    'bn1': 'expand_conv.bn',
    'conv2': 'depthwise_conv.conv',
    'bn2': 'depthwise_conv.bn',
    'conv3': 'linear_conv.conv',
    'bn3': 'linear_conv.bn',
    'chan_attention.conv': 'eca.conv',
}
_MBV2_SHARED = {'1': 'expand_conv', '2': 'linear_conv'}


def _mobilenet_rules(shared_convs: Tuple[str, ...], shared_stages: Tuple[int, ...]) -> List[_Rule]:
    def stage_of(n: str) -> int:  # official basis n (1..4) -> our layer index (1-based)
        n = int(n)
        return shared_stages[n - 1] + 1 if 1 <= n <= len(shared_stages) else 100 + n

    def block_key(prefix: str, rest: str) -> str:
        mod, _, attr = rest.rpartition('.')
        return f'{prefix}.{_MBV2_BLOCK[mod]}.{attr}'

    blk_mod = r'((?:conv|bn)[123]|chan_attention\.conv)\.(\w+)$'
    rules: List[_Rule] = [
        (re.compile(r'^pre\.0\.(weight|bias)$'), lambda m: f'conv1.conv.{m[1]}', False),
        (re.compile(r'^pre\.1\.(\w+)$'), lambda m: f'conv1.bn.{m[1]}', False),
        (re.compile(r'^conv1\.0\.(weight|bias)$'), lambda m: f'conv2.conv.{m[1]}', False),
        (re.compile(r'^conv1\.1\.(\w+)$'), lambda m: f'conv2.bn.{m[1]}', False),
        (re.compile(r'^stage([17])\.' + blk_mod), lambda m: block_key(f'layer{m[1]}.0', f'{m[2]}.{m[3]}'), False),
        (
            re.compile(r'^stage([2-6])\.(\d+)\.' + blk_mod),
            lambda m: block_key(f'layer{m[1]}.{m[2]}', f'{m[3]}.{m[4]}'),
            False,
        ),
    ]
    # "Shared": one basis per stage (shared_basis_{n}, block copies shared_basis1); "Shared++": two
    # (shared_basis_{n}_{1,2}, block copies shared_basis{1,2})
    net, blk = (r'(\d)', r'(1)') if len(shared_convs) == 1 else (r'(\d)_([12])', r'([12])')
    rules += [
        (
            re.compile(rf'^shared_basis_{net}\.weight$'),
            lambda m: f'layer{stage_of(m[1])}.shared_basis_{_MBV2_SHARED[m[2] if m.lastindex > 1 else "1"]}',
            False,
        ),
        (
            re.compile(rf'^stage([2-6])\.(\d+)\.shared_basis{blk}\.weight$'),
            lambda m: f'layer{m[1]}.shared_basis_{_MBV2_SHARED[m[3]]}',
            True,
        ),
    ]
    return rules


def _rules(arch: str) -> List[_Rule]:
    _, shared_convs, sharing, shared_stages, _ = _target(arch)
    if arch.startswith('MobileNetV2'):
        return _mobilenet_rules(shared_convs, shared_stages)
    return _resnet_rules(shared_convs, sharing)


# ---------------------------------------------------------------------------------------------- conversion
def _validate_state_dict(state_dict) -> None:
    if not isinstance(state_dict, Mapping):
        raise NetRL2ConversionError(f'a state dict must be a mapping of str -> Tensor, got {type(state_dict).__name__}')
    bad = [repr(k) for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise NetRL2ConversionError(f'a state dict must map str -> Tensor; these entries do not: {brief(bad)}')
    if not state_dict:
        raise NetRL2ConversionError('the state dict is empty')


def _convert(state_dict: Mapping[str, Tensor], arch: str) -> 'OrderedDict[str, Tensor]':
    rules = _rules(arch)
    sources: Dict[str, List[Tuple[str, bool]]] = {}
    values: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in strip_module_prefix(state_dict).items():
        if _CLASSIFIER.match(key):
            continue
        for pattern, target, alias in rules:
            m = pattern.match(key)
            if m:
                new = target(m)
                if new in values and not torch.equal(values[new], value):
                    raise NetRL2ConversionError(
                        f'{key!r} should be a copy of the shared basis {sources[new][0][0]!r} (the official model '
                        'registers each shared conv on every block using it) but the values differ: the '
                        'checkpoint is inconsistent'
                    )
                sources.setdefault(new, []).append((key, alias))
                values.setdefault(new, value)
                break
        else:
            unknown.append(key)
    collisions = [
        f'{new} <- {[k for k, _ in src]}' for new, src in sources.items() if sum(not alias for _, alias in src) > 1
    ]
    if collisions:
        raise NetRL2ConversionError(f'several official keys map to one mmbasis key: {brief(collisions)}')

    expected = expected_shapes(arch)
    official_name = {new: src[0][0] for new, src in sources.items()}
    given = dict.fromkeys(unknown)  # keys no rule maps: unexpected, shown by their official names
    given.update(values)
    fit = compare_keys(expected, given)
    problems = fit.problems(
        given='official',
        expected='mmbasis',
        labels=dict(missing='missing (mmbasis keys with no official source)', unexpected='unexpected official keys'),
        names=official_name,
    )
    if problems:
        raise NetRL2ConversionError(
            f'the checkpoint is not an official {arch} ({NETRL2_ARCHS[arch]}) model: ' + '; '.join(problems)
        )
    out = OrderedDict()
    for k in expected:  # mmbasis order; BN counters absent from very old checkpoints start at 0
        out[k] = values[k] if k in values else torch.tensor(0, dtype=torch.long)
    return out


def guess_netrl2_arch(state_dict: Mapping[str, Tensor]) -> List[str]:
    """The archs whose official key names and shapes ``state_dict`` matches exactly."""
    _validate_state_dict(state_dict)
    found = []
    for arch in NETRL2_ARCHS:
        try:
            _convert(state_dict, arch)
        except NetRL2ConversionError:
            continue
        found.append(arch)
    return found


def convert_netrl2_state_dict(state_dict: Mapping[str, Tensor], arch: str) -> 'OrderedDict[str, Tensor]':
    """Convert an official Net_RL2 state dict into the state dict of ``paper_backbone_cfg(arch)``.

    Args:
        state_dict (Mapping[str, Tensor]): ``checkpoint['net_state_dict']`` of the official code (keys may
            carry ``module.``); the classifier is dropped.
        arch (str): paper name, one of :data:`NETRL2_ARCHS`.

    Returns:
        OrderedDict[str, Tensor]: keys relative to the backbone (no ``backbone.`` prefix), in the backbone's
        order, each shared basis once; loads with ``strict=True`` into ``MODELS.build(paper_backbone_cfg(arch))``.
        Tensors are the input tensors (not copies).

    Raises:
        ValueError: unknown ``arch``.
        NetRL2ConversionError: keys missing or unexpected, shapes that do not fit ``arch``, or copies of a
            shared basis that differ. The message names the offending keys and, when the checkpoint fits
            another arch, that arch.
    """
    _check_arch(arch)
    _validate_state_dict(state_dict)
    try:
        return _convert(state_dict, arch)
    except NetRL2ConversionError as e:
        others = [a for a in guess_netrl2_arch(state_dict) if a != arch]
        hint = (
            f' It matches --arch {" / ".join(repr(a) for a in others)}.'
            if others
            else f' Known archs: {", ".join(NETRL2_ARCHS)}.'
        )
        raise NetRL2ConversionError(str(e) + hint) from None


def extract_netrl2_state_dict(checkpoint) -> Tuple['OrderedDict[str, Tensor]', dict]:
    """The state dict and training info inside a loaded official checkpoint.

    Accepts the dict written by ``train_ilsvrc.py`` (``net_state_dict``, ``epoch``, ``acc``) or a plain
    state dict. Returns ``(state_dict, info)`` with ``info`` holding ``epoch`` / ``top1_acc`` when present.
    """
    if isinstance(checkpoint, Mapping) and 'net_state_dict' in checkpoint:
        sd = checkpoint['net_state_dict']
        info = {}
        if isinstance(checkpoint.get('epoch'), int):
            info['epoch'] = checkpoint['epoch']
        acc = checkpoint.get('acc')
        if isinstance(acc, (int, float)) or (isinstance(acc, Tensor) and acc.numel() == 1):
            info['top1_acc'] = float(acc)
        _validate_state_dict(sd)
        return OrderedDict(sd), info
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        raise NetRL2ConversionError(
            "this is an mmengine/mmdet checkpoint (it has 'state_dict', not 'net_state_dict'), not an official "
            'Net_RL2 one; if it came from this converter it is already converted'
        )
    if (
        isinstance(checkpoint, Mapping)
        and checkpoint
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint.items())
    ):
        return OrderedDict(checkpoint), {}
    if isinstance(checkpoint, Mapping):
        found = f'a dict with keys {brief([repr(k) for k in checkpoint])}' if checkpoint else 'an empty dict'
    else:
        found = f'a {type(checkpoint).__name__}'
    raise NetRL2ConversionError(
        f"expected an official Net_RL2 checkpoint (a dict with 'net_state_dict', as saved "
        f'by train_ilsvrc.py) or a plain state dict; found {found}'
    )


def load_netrl2_checkpoint(path: str) -> Tuple['OrderedDict[str, Tensor]', dict]:
    """Load an official checkpoint with ``weights_only=True`` (CPU) -> ``(state_dict, info)``.

    Raises:
        FileNotFoundError, CheckpointFormatError: see :func:`extract_netrl2_state_dict`.
    """
    try:
        return extract_netrl2_state_dict(load_weights_only(path))
    except NetRL2ConversionError as e:
        raise NetRL2ConversionError(f'{str(path)!r}: {e}') from None


def netrl2_checkpoint_meta(arch: str, source: Optional[str] = None, info: Optional[dict] = None) -> dict:
    """``meta`` of a converted checkpoint (plain Python types only, so it loads with ``weights_only``)."""
    meta = dict(
        arch=arch,
        official_model=NETRL2_ARCHS[arch],
        backbone_cfg=paper_backbone_cfg(arch),
        keys='relative to the backbone: use init_cfg=dict(type="Pretrained", checkpoint=...) on the backbone',
        converter='mmbasis tools/model_converters/netrl2_to_mmbasis.py',
        mmbasis_version=__version__,
    )
    if source is not None:
        meta['source'] = str(source)
    for k, v in (info or {}).items():
        meta[f'official_{k}'] = v
    return meta
