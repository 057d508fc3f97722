"""Every moved public name keeps working from its old module and warns (DeprecationWarning naming the new home)."""

import importlib

import pytest

#: (old module, name, new module): the names users' code imports today
MOVED = [
    ('mmbasis.paper_models', 'PAPER_MODELS', 'mmbasis.models.archs'),
    ('mmbasis.paper_models', 'paper_backbone_cfg', 'mmbasis.models.archs'),
    ('mmbasis.paper_models', 'plain_counterpart', 'mmbasis.models.archs'),
    ('mmbasis.apis', 'decompose_checkpoint', 'mmbasis.decompose'),
    ('mmbasis.apis', 'format_report', 'mmbasis.decompose'),
    ('mmbasis.apis', 'calibrate_deploy_forms', 'mmbasis.deploy'),
    ('mmbasis.apis.decompose', 'decompose_resnet', 'mmbasis.decompose'),
    ('mmbasis.apis.deploy_calibration', 'calibrate_deploy_forms', 'mmbasis.deploy.calibration'),
    ('mmbasis.apis.onnx_export', 'export_onnx', 'mmbasis.deploy.onnx'),
    ('mmbasis.apis.end2end', 'End2EndDetector', 'mmbasis.deploy.end2end'),
    ('mmbasis.apis.deploy_check', 'check_runtimes', 'mmbasis.deploy.runtime'),
    ('mmbasis.apis.deploy_ops', 'nms_keep', 'mmbasis.deploy.ops'),
    ('mmbasis.models.layers', 'fuse_conv_norm', 'mmbasis.deploy.folding'),
    ('mmbasis.models.layers', 'deploy_form', 'mmbasis.deploy.folding'),
    ('mmbasis.models.layers', 'DEPLOY_FORMS', 'mmbasis.deploy.folding'),
    ('mmbasis.utils', 'install_checkpoint_allowlist', 'mmbasis.compat'),
    ('mmbasis.utils.checkpoint_compat', 'history_buffer_getattr', 'mmbasis.compat.checkpoint_allowlist'),
    ('mmbasis.utils.cli', 'setup_cpu_distributed', 'mmbasis.compat'),
    ('mmbasis.utils.cli', 'slurm_environment', 'mmbasis.compat'),
    ('mmbasis.utils.pretrained', 'check_pretrained_fits', 'mmbasis.models.layers.state_check'),
    ('mmbasis.utils.misc', 'replace_marked_block', 'mmbasis.utils.docs'),
]


@pytest.mark.parametrize('old, name, new', MOVED, ids=[f'{o}.{n}' for o, n, _ in MOVED])
def test_a_moved_name_still_imports_and_warns(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf'{old}\.{name} moved to {new}\.{name}'):
        got = getattr(module, name)
    assert got is getattr(importlib.import_module(new), name)


def test_an_unknown_name_of_an_old_module_is_an_attribute_error():
    import mmbasis.paper_models as old

    with pytest.raises(AttributeError, match="module 'mmbasis.paper_models' has no attribute 'nothing'"):
        old.nothing  # noqa: B018
