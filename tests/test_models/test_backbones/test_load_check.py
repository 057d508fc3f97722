"""A shared-basis backbone refuses weights that do not fit its form, whichever loader hands them over.

mmengine's non-strict loading (the runner's ``load_from``, ``Pretrained`` init) only logs missing and unexpected
keys, so a deploy checkpoint given to a backbone built in other deploy forms, or in the training form, used to
run with part of the backbone random (issue 21, point 4).
"""

import pytest
import torch
from mmdet.models.backbones import ResNet
from mmengine.runner import load_checkpoint

from mmbasis.deploy.folding import deploy_form
from mmbasis.models import SharedBasisMobileNetV2, SharedBasisResNet
from mmbasis.models.layers import FactorizedConv2d
from tests.helpers import randomize_bn

R18 = dict(depth=18, base_channels=8, shared_rank=2, unique_rank=1, basis_sharing='conv')
FLIP = {'merged': 'factorized', 'factorized': 'merged'}


def default_forms(model) -> dict:
    """The deploy form the multiply-add rule gives every factorised convolution."""
    return {
        n: deploy_form(m.basis.in_channels, m.out_channels, m.basis.rank, m.basis.kernel_size)
        for n, m in model.named_modules()
        if isinstance(m, FactorizedConv2d)
    }


def deploy_weights(forms=None, prefix: str = '') -> dict:
    """The state dict of an R18 backbone folded with ``forms`` (as switch_to_deploy.py writes it)."""
    torch.manual_seed(0)
    model = SharedBasisResNet(**R18, deploy_forms=forms)
    randomize_bn(model)
    model.eval().switch_to_deploy()
    return {prefix + k: v for k, v in model.state_dict().items()}


def flipped_forms() -> dict:
    return {n: FLIP[f] for n, f in default_forms(SharedBasisResNet(**R18)).items()}


LOADERS = {
    'torch non-strict': lambda model, sd, path: model.load_state_dict(sd, strict=False),
    'torch strict': lambda model, sd, path: model.load_state_dict(sd, strict=True),
    'mmengine load_checkpoint': lambda model, sd, path: load_checkpoint(model, path, strict=False),
}


@pytest.mark.parametrize('loader', LOADERS)
def test_deploy_weights_of_other_forms_are_refused_by_every_loader(loader, tmp_path):
    forms = flipped_forms()
    weights = deploy_weights(forms)
    path = str(tmp_path / 'deploy.pth')
    torch.save(dict(meta=dict(deploy=True, deploy_forms=forms), state_dict=weights), path)
    model = SharedBasisResNet(**R18, deploy=True)  # deploy=True without the checkpoint's deploy_forms
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        LOADERS[loader](model, weights, path)
    msg = str(err.value)
    assert 'SharedBasisResNet (deploy form) refuses' in msg and 'are not in the checkpoint' in msg
    some_conv = sorted(forms)[0]
    assert f"{some_conv}: '{forms[some_conv]}'" in msg  # the forms the checkpoint holds, read from its keys
    assert "meta['deploy_forms']" in msg and 'tools/test.py' in msg  # how to fix it
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing was copied


def test_pretrained_init_gives_the_same_advice(tmp_path):
    path = str(tmp_path / 'deploy.pth')
    torch.save(dict(state_dict=deploy_weights(flipped_forms())), path)
    pretrained = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(ValueError, match=r'Fix: the checkpoint holds its convolutions in other deploy forms'):
        SharedBasisResNet(**R18, deploy=True, init_cfg=pretrained).init_weights()
    # into the training form: deploy weights, not "a plain ResNet checkpoint"
    with pytest.raises(ValueError, match=r'Fix: these are deploy-form weights') as err:
        SharedBasisResNet(**R18, init_cfg=pretrained).init_weights()
    assert 'plain_to_shared' not in str(err.value)


def test_the_checkpoints_forms_load_and_compute_the_same(tmp_path):
    forms = flipped_forms()
    path = str(tmp_path / 'deploy.pth')
    torch.save(dict(state_dict=deploy_weights(forms)), path)
    model = SharedBasisResNet(**R18, deploy=True, deploy_forms=forms).eval()
    load_checkpoint(model, path, strict=False)
    torch.manual_seed(0)
    reference = SharedBasisResNet(**R18)
    randomize_bn(reference)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), reference.eval()(x)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_deploy_weights_into_a_training_form_backbone_name_the_fix():
    model = SharedBasisResNet(**R18)
    with pytest.raises(ValueError, match=r'\(training form\) refuses.*these are deploy-form weights.*deploy=True'):
        # through a detector-like prefix, as mmengine's runner loads it
        wrapper = torch.nn.Module()
        wrapper.backbone = model
        wrapper.load_state_dict(deploy_weights(prefix='backbone.'), strict=False)


def test_training_weights_into_a_deploy_backbone_name_the_fix():
    training = SharedBasisResNet(**R18).state_dict()
    with pytest.raises(ValueError, match=r'\(deploy form\) refuses.*training-form weights.*SwitchToDeployHook'):
        SharedBasisResNet(**R18, deploy=True).load_state_dict(training, strict=False)


@pytest.mark.parametrize('deploy', [False, True], ids=['training form', 'deploy form'])
def test_a_shape_mismatch_is_refused_with_both_shapes(deploy, tmp_path):
    other = SharedBasisResNet(**dict(R18, shared_rank=3), deploy=deploy)  # same names, other ranks
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=other.state_dict()), path)
    model = SharedBasisResNet(**R18, deploy=deploy)
    with pytest.raises(ValueError, match=r'shape mismatches \(checkpoint vs model\): layer\S+ \(\d+, .*\) vs \(\d+'):
        load_checkpoint(model, path, strict=False)  # mmengine: used to log a warning and go on


def test_mobilenet_checks_too():
    torch.manual_seed(0)
    trained = SharedBasisMobileNetV2(shared_convs=('expand_conv', 'linear_conv'), widen_factor=0.5)
    folded = trained.eval()
    folded.switch_to_deploy()
    with pytest.raises(ValueError, match='SharedBasisMobileNetV2 \\(training form\\) refuses.*deploy-form weights'):
        SharedBasisMobileNetV2(shared_convs=('expand_conv', 'linear_conv'), widen_factor=0.5).load_state_dict(
            folded.state_dict(), strict=False
        )


def test_loads_that_fit_or_do_not_concern_the_backbone_still_pass():
    # a plain ResNet's stem and first blocks by name (the training form, non-strict)
    SharedBasisResNet(**R18).load_state_dict(ResNet(depth=18, base_channels=8).state_dict(), strict=False)
    # extra keys (a classifier) next to complete deploy weights
    weights = deploy_weights()
    weights.update({'fc.weight': torch.zeros(10, 64), 'fc.bias': torch.zeros(10)})
    SharedBasisResNet(**R18, deploy=True).load_state_dict(weights, strict=False)
    # a state dict with nothing under the backbone's prefix (e.g. only a head)
    wrapper = torch.nn.Module()
    wrapper.backbone = SharedBasisResNet(**R18, deploy=True)
    wrapper.load_state_dict({'head.weight': torch.zeros(1)}, strict=False)
