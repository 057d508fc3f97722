""".dev_scripts/training_cost.py: the GPU-hour estimates of docs/cluster.md."""

import pytest

from tests.helpers import load_tool

cost = load_tool('.dev_scripts/training_cost.py')


def test_docs_table_is_up_to_date(capsys):
    assert cost.main(['--check']) == 0, capsys.readouterr().out


def test_the_table_goes_into_another_page_with_doc_and_the_old_readme_option(tmp_path, capsys):
    page = tmp_path / 'page.md'
    page.write_text('intro\n<!-- training-cost:start -->\nold\n<!-- training-cost:end -->\nend\n', encoding='utf-8')
    assert cost.main(['--doc', str(page)]) == 0
    text = page.read_text(encoding='utf-8')
    assert 'old' not in text and '| [faster-rcnn_r50-in1k_fpn_1x_coco]' in text and text.endswith('end\n')
    page.write_text('<!-- training-cost:start -->\n<!-- training-cost:end -->\n', encoding='utf-8')
    with pytest.warns(DeprecationWarning, match='--readme FILE is deprecated'):
        assert cost.main(['--readme', str(page)]) == 0
    assert '--readme is deprecated' in capsys.readouterr().err and '| [faster-rcnn' in page.read_text(encoding='utf-8')


def test_the_anchor_and_the_scaling():
    models = {m['name']: m for m in cost.read_zoo()}
    anchor = models[cost.ANCHOR_CONFIG]
    # mmdet's published speed: 0.216 s/iter on 8 V100 x 2 images = 0.108 V100-seconds per image
    assert cost.seconds_per_image() == pytest.approx(0.108)
    # 12 epochs of the 117,266 COCO training images at 0.108 s
    assert cost.gpu_hours(anchor, anchor['gmacs']) == pytest.approx(12 * 117_266 * 0.108 / 3600)
    # twice the multiply-adds, twice the cost; VOC counts its own images
    double = dict(anchor, gmacs=2 * anchor['gmacs'])
    assert cost.gpu_hours(double, anchor['gmacs']) == pytest.approx(2 * cost.gpu_hours(anchor, anchor['gmacs']))
    voc = models['faster-rcnn_r50-in1k_fpn_1x_voc0712']
    assert cost.gpu_hours(voc, anchor['gmacs']) == pytest.approx(
        12 * 16_551 * 0.108 * voc['gmacs'] / anchor['gmacs'] / 3600
    )
    assert cost.kind(anchor) == 'scaled' and cost.kind(models['ssd300_r34-in1k_8xb8-120e_coco']) == 'lower bound'
    # every config of the zoo has a row; each shared one is compared with its plain baseline
    table = cost.table(list(models.values()))
    assert all(f'[{name}]' in table for name in models)
    assert '| -4.4 % | scaled |' in table  # faster-rcnn_r34-s48u1star against faster-rcnn_r34


def test_unknown_data_is_refused():
    model = dict(name='x', data='Objects365', epochs=12, gmacs=1.0)
    with pytest.raises(ValueError, match="x: no training-image count for data 'Objects365'"):
        cost.gpu_hours(model, 1.0)
