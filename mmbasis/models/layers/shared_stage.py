"""The stage that owns its shared filter bases (recursive sharing, paper Sec. 3.1).

A shared basis is a plain ``nn.Parameter`` registered **once**, directly on the stage module
(``backbone.layer3.shared_basis`` or ``backbone.layer3.shared_basis_conv1``). The stage's blocks hold
non-registering references to it (see :class:`~mmbasis.models.layers.BasisConv2d`), so
``parameters()``, ``state_dict()``, checkpoints, DDP, EMA and mmengine's optimizer constructor with any
``paramwise_cfg`` all see each shared tensor exactly once, while gradients of every block that uses it
accumulate into it.

Parameters are not modules, so the stage still iterates (``forward``, ``len``, indexing) over its blocks
only, exactly like mmdet's ``ResLayer``/``nn.Sequential`` stages, and keys of the blocks keep mmdet's
names (``layer3.1.conv1...``).
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import Sequential

from ...deploy.folding import check_forms, fold_backbone
from .basis_conv import FactorizedConv2d
from .state_check import check_incoming_state, check_pretrained_fits


@dataclass
class BasisGroup:
    """Shared bases regularised together (one ``B_g`` of the paper's orthogonality loss).

    Attributes:
        family (str): pooling family. The paper pools the squared errors of all groups of one family
            (over the stages) and divides by their total number of entries; different families are
            separate terms (e.g. ``'conv3x3'`` and ``'conv1x1'`` of ResNet50-Shared++).
        name (str): qualified name of the group (e.g. ``'layer3.shared_basis'``).
        shared (list[(str, Parameter)]): the shared bases, concatenated row-wise (``B_g`` has
            ``sum(s_i)`` rows and ``S k^2`` columns). Two bases initialised jointly form one group.
        unique (list[(str, Parameter)]): the unique bases of every layer that uses these shared bases
            (for the optional unique-basis regularisation, CIFAR-10 variant of the official code).
    """

    family: str
    name: str
    shared: List[Tuple[str, nn.Parameter]]
    unique: List[Tuple[str, nn.Parameter]] = field(default_factory=list)

    def matrix(self) -> torch.Tensor:
        """``B_g``: the shared bases flattened to rows and concatenated, ``(sum s_i, S k^2)``."""
        return torch.cat([p.flatten(1) for _, p in self.shared], dim=0)


class SharedBasisStage(Sequential):
    """An ``nn.Sequential`` stage of blocks plus the shared bases those blocks use.

    Usage: create the stage, :meth:`add_shared_basis` for every basis, build the blocks with references
    to ``stage.<name>``, then :meth:`append` them.

    Args:
        init_cfg (dict, optional): mmengine init config of the stage.
    """

    def __init__(self, *blocks: nn.Module, init_cfg: Optional[dict] = None) -> None:
        # ``*blocks`` as nn.Sequential (also what slicing, ``stage[1:]``, passes: a stage of those blocks
        # without the bases)
        super().__init__(*blocks, init_cfg=init_cfg)
        self._basis_groups: List[Tuple[str, Tuple[str, ...]]] = []  # (family, names initialised jointly)

    def add_shared_basis(
        self,
        name: str,
        rank: int,
        in_channels: int,
        kernel_size: int = 3,
        family: str = 'shared',
        joint_with: Optional[str] = None,
        init: bool = True,
    ) -> nn.Parameter:
        """Register a shared basis ``(rank, in_channels, k, k)`` as ``self.<name>``.

        Args:
            name (str): attribute name; must start with ``'shared_basis'``.
            rank (int): ``s``, number of shared basis elements.
            in_channels (int): ``S``.
            kernel_size (int): ``k``.
            family (str): pooling family of the orthogonality regulariser.
            joint_with (str, optional): name of an earlier basis of this stage with the same shape that
                is initialised (one orthogonal matrix split in parts) and regularised jointly with this one.
            init (bool): initialise the basis' group now; a builder adding several bases passes False and calls
                :meth:`reset_shared_bases` once at the end (one orthogonalisation per group, not per basis).
        """
        if not name.startswith('shared_basis'):
            raise ValueError(f"shared basis names must start with 'shared_basis', got {name!r}")
        if rank < 1 or in_channels < 1 or kernel_size < 1:
            raise ValueError(
                f'shared basis {name!r}: rank, in_channels and kernel_size must be >= 1, '
                f'got {rank}, {in_channels}, {kernel_size}'
            )
        weight = nn.Parameter(torch.empty(rank, in_channels, kernel_size, kernel_size))
        self.register_parameter(name, weight)
        if joint_with is None:
            self._basis_groups.append((family, (name,)))
        else:
            idx = [i for i, (_, names) in enumerate(self._basis_groups) if joint_with in names]
            if not idx:
                raise ValueError(f'joint_with={joint_with!r} is not a shared basis of this stage')
            fam, names = self._basis_groups[idx[0]]
            other = getattr(self, joint_with)
            if other.shape[1:] != weight.shape[1:] or fam != family:
                raise ValueError(
                    f'{name!r} {tuple(weight.shape)} cannot be joint with {joint_with!r} '
                    f'{tuple(other.shape)}: shapes (apart from the rank) and families must agree'
                )
            self._basis_groups[idx[0]] = (fam, names + (name,))
        if init:
            self.reset_shared_bases(self._basis_groups[-1 if joint_with is None else idx[0]][1])
        return weight

    def remove_shared_bases(self) -> None:
        """Drop the shared bases (deploy mode, after the blocks folded them into their own weights)."""
        for name in self.shared_basis_names():
            delattr(self, name)
        self._basis_groups = []

    def shared_basis_names(self) -> List[str]:
        return [n for _, names in self._basis_groups for n in names]

    @torch.no_grad()
    def reset_shared_bases(self, names: Optional[Sequence[str]] = None) -> None:
        """Orthogonal initialisation (``torch.nn.init.orthogonal_``) of every shared basis.

        Bases of one joint group are initialised as one orthogonal matrix split row-wise, so they are
        mutually orthogonal at the start (official ResNet34 double-shared init). ``names`` restricts the
        initialisation to the groups containing those bases.
        """
        for _, group in self._basis_groups:
            if names is not None and not set(group) & set(names):
                continue
            params = [getattr(self, n) for n in group]
            full = torch.empty(
                sum(p.shape[0] for p in params), params[0][0].numel(), dtype=params[0].dtype, device=params[0].device
            )
            nn.init.orthogonal_(full)
            start = 0
            for p in params:
                p.copy_(full[start : start + p.shape[0]].view_as(p))
                start += p.shape[0]

    def init_weights(self) -> None:
        """mmengine init of the blocks, then orthogonal init of the shared bases.

        A ``Pretrained`` init_cfg of the backbone is applied after this (mmengine loads pretrained
        weights last), so pretrained shared bases are not overwritten.
        """
        super().init_weights()
        self.reset_shared_bases()

    def basis_groups(self, prefix: str = '') -> List[BasisGroup]:
        """The :class:`BasisGroup` of this stage, with names qualified by ``prefix``."""
        from .basis_conv import BasisConv2d

        pre = f'{prefix}.' if prefix else ''
        users: Dict[int, List[Tuple[str, nn.Parameter]]] = {}
        for mod_name, mod in self.named_modules():
            if isinstance(mod, BasisConv2d) and mod.shared_basis is not None and mod.unique_basis is not None:
                users.setdefault(id(mod.shared_basis), []).append((f'{pre}{mod_name}.unique_basis', mod.unique_basis))
        groups = []
        for family, names in self._basis_groups:
            shared = [(f'{pre}{n}', getattr(self, n)) for n in names]
            unique = [u for _, p in shared for u in users.get(id(p), [])]
            groups.append(BasisGroup(family, f'{pre}{"+".join(names)}', shared, unique))
        return groups


class SharedBasisBackboneMixin:
    """What every backbone with shared filter bases offers (used by the hooks and the tools).

    Mixed into mmdet backbones whose stages are :class:`SharedBasisStage` modules. The backbone provides
    ``_stages()`` (its stage modules) and ``_deploy_unshared_parts()`` (folds its stem and other
    convolutions outside the stages).
    """

    def _stages(self) -> List[SharedBasisStage]:
        raise NotImplementedError

    def _deploy_unshared_parts(self) -> None:
        raise NotImplementedError

    def _named_shared_stages(self):
        for name, mod in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(mod, SharedBasisStage) and mod.shared_basis_names():
                yield name, mod

    def basis_groups(self) -> List[BasisGroup]:
        """Every :class:`BasisGroup` of the backbone, in stage order (empty in deploy mode)."""
        return [g for name, stage in self._named_shared_stages() for g in stage.basis_groups(name)]

    def shared_bases(self) -> Dict[str, nn.Parameter]:
        """Qualified name -> shared basis tensor, each tensor once."""
        return {
            f'{name}.{n}': getattr(stage, n)
            for name, stage in self._named_shared_stages()
            for n in stage.shared_basis_names()
        }

    #: Fraction of the backbone's values a ``Pretrained`` checkpoint must fill (tensors matched by name and shape).
    PRETRAINED_MIN_MATCH = 0.9

    def init_weights(self) -> None:
        """mmengine's init; a ``Pretrained`` init_cfg must first fill at least 90 % of the backbone's values.

        mmengine loads pretrained weights with ``strict=False`` and only logs mismatches, so a plain ResNet
        checkpoint (or one of another rank or depth) would leave most of a shared-basis backbone random and
        training would go on silently. Here such a checkpoint stops with an error naming the file, how many
        tensors matched and the first mismatches; a compatible checkpoint loads as before.
        """
        check_pretrained_fits(self, self.init_cfg, self.PRETRAINED_MIN_MATCH)
        super().init_weights()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Refuse weights that do not fit this backbone's form before any is copied (``check_incoming_state``):
        every loader (mmengine's non-strict ``load_checkpoint`` and ``Pretrained`` init, ``load_state_dict``)
        passes here."""
        check_incoming_state(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]

    def set_deploy_forms(self, forms: Optional[Dict[str, str]]) -> None:
        """Force the deploy form of named factorised convolutions (``{'layer1.1.conv1': 'merged', ...}``, as
        ``mmbasis.deploy.calibrate_deploy_forms`` measures and a calibrated deploy checkpoint's ``meta`` records);
        the others keep the multiply-add rule. Must come before :meth:`switch_to_deploy`."""
        if not forms:
            return
        convs = {n: m for n, m in self.named_modules() if isinstance(m, FactorizedConv2d)}  # type: ignore
        check_forms(forms, convs)
        for name, form in forms.items():
            convs[name].forced_deploy_form = form

    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm and turn every basis/factorised convolution into plain ``nn.Conv2d``.

        Factorised convolutions take the cheaper exact form (:func:`~mmbasis.deploy.folding.deploy_form`);
        the shared bases are folded into each block (the per-layer BNs differ) and removed from the stages,
        so :meth:`basis_groups` is empty afterwards. Outputs equal the eval-mode training form. As in mmpretrain's
        RepVGG, this is one-way.
        """
        fold_backbone(self)
