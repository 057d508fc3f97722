"""tools/deployment/pytorch2onnx.py: its command line and its one-line errors (the export itself:
tests/test_deploy/test_onnx.py and test_end2end.py, which drive it through this command)."""

import pytest

from tests.helpers import load_tool
from tests.helpers.tiny import DEMO_CONFIG, NARROW_DEMO

tool = load_tool('tools/deployment/pytorch2onnx.py')
SSD = 'configs/ssd/ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py'


@pytest.mark.parametrize(
    'argv, message',
    [
        ([SSD, 'out.pt'], "OUT must end with .onnx, got 'out.pt'"),
        ([SSD, 'o.onnx', '--shape', '16', '300'], '--shape must be at least 32 x 32, got 16 x 300'),
        (['configs/none.py', 'o.onnx'], 'no such config file: configs/none.py'),
        ([SSD, 'o.onnx', '--checkpoint', 'none.pth'], 'no such checkpoint: none.pth'),
        ([SSD, 'o.onnx', '--tolerance', '0'], '--tolerance must be positive, got 0.0'),
        ([SSD, 'o.onnx', '--batch', '0'], '--batch must be a positive integer, got 0'),
        ([SSD, 'o.onnx', '--batch', '2', '--mode', 'tensor'], '--batch 2 is for --mode end2end; --mode tensor exports'),
        ([SSD, 'o.onnx', '--image', 'a.jpg'], 'no such image: a.jpg'),
    ],
)
def test_bad_arguments_are_refused_with_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        tool.parse_args(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_a_config_whose_backbone_weights_are_missing_is_one_error_line(tmp_path, capsys):
    # the SSD config starts from converted ImageNet weights that are not on this machine
    assert tool.main([SSD, str(tmp_path / 'x.onnx'), '--shape', '300', '300']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'Traceback' not in err and not (tmp_path / 'x.onnx').exists()


def test_a_two_stage_detector_has_no_tensor_mode_and_says_so(tmp_path, capsys):
    """Whole-detector export of Faster R-CNN used to end in a raw traceback (``_forward`` needs data samples)."""
    config, options = DEMO_CONFIG, NARROW_DEMO
    out = tmp_path / 'x.onnx'
    cfg_options = [f'{k}={v}'.replace(' ', '') for k, v in options.items()]
    assert tool.main([config, str(out), '--mode', 'tensor', '--cfg-options', *cfg_options]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: FasterRCNN has no tensor mode to export') and 'end to end' in err
    assert 'Traceback' not in err and not out.exists()
