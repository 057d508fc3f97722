"""Reading a ``Pretrained`` init_cfg's checkpoint exactly as mmengine's ``PretrainedInit`` will read it.

For: mmengine 0.10.7, whose ``PretrainedInit`` loads with ``strict=False`` through the private
``_load_checkpoint`` / ``_load_checkpoint_with_prefix``; mmbasis checks a checkpoint before that load (the 90 % rule
of :mod:`mmbasis.models.layers.state_check`) and must see the same tensors. This module does it with the public
``CheckpointLoader`` (same path schemes: local files, ``torchvision://``, ``http(s)://``, ...) and the prefix rule
of ``_load_checkpoint_with_prefix``. Remove when: mmengine offers the prefix load publicly (then call it here), or
its ``PretrainedInit`` refuses checkpoints that leave a module largely uninitialised.
"""

from typing import Mapping, Optional

from mmengine.runner import CheckpointLoader


def load_pretrained_state(path: str, prefix: Optional[str] = None) -> Mapping:
    """The state dict ``PretrainedInit(checkpoint=path, prefix=prefix)`` loads (on the CPU).

    With ``prefix`` only the keys under it, the prefix removed (mmengine's rule; ``ValueError`` when there is none).
    """
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='current')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    if prefix is None:
        return state
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f'the Pretrained checkpoint {path!r} has no keys under the prefix {prefix!r}')
    return state
