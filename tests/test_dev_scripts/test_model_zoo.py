"""The model zoo's files: every zoo config is listed in its folder's metafile (mmdet's format), the metafiles are
imported by model-index.yml, the tables of the configs' READMEs and of docs/model_zoo.md list every config, and
``.dev_scripts/model_zoo.py --check`` finds nothing to change, i.e. the listed parameters and GMACs are those of the
built models."""

from pathlib import Path

import pytest
import yaml

from mmbasis.models.archs import PAPER_MODELS
from tests.helpers import load_tool

REPO = Path(__file__).resolve().parents[2]
zoo = load_tool('.dev_scripts/model_zoo.py')
ZOO = zoo.zoo_configs()
METADATA = (
    'Backbone',
    'Weights',
    'Training Data',
    'Epochs',
    'Input Size',
    'Backbone Parameters',
    'Parameters',
    'GMACs',
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding='utf-8'))


def test_zoo_is_the_three_folders_and_not_the_shapes_demo():
    folders = {p.parent.name for p in ZOO}
    assert folders == {'faster_rcnn', 'ssd', 'pascal_voc'}
    assert len(ZOO) == 27 and not any('shapes' in p.parts for p in ZOO)


def test_model_index_imports_every_metafile():
    index = load(REPO / 'model-index.yml')
    assert index['Import'] == [f'configs/{f}/metafile.yml' for f in zoo.ZOO_FOLDERS]
    assert all((REPO / f).is_file() for f in index['Import'])


@pytest.mark.parametrize('folder', zoo.ZOO_FOLDERS)
def test_metafile_lists_every_config_of_its_folder(folder):
    meta = load(REPO / 'configs' / folder / 'metafile.yml')
    collections = {c['Name'] for c in meta['Collections']}
    configs = sorted(f'configs/{folder}/{p.name}' for p in ZOO if p.parent.name == folder)
    assert sorted(m['Config'] for m in meta['Models']) == configs
    for model in meta['Models']:
        assert model['Name'] == Path(model['Config']).stem and model['In Collection'] in collections
        assert all(key in model['Metadata'] for key in METADATA), model['Name']
        assert model['Results'] is None and model['Notes'].startswith('not trained'), model['Name']
        assert model['Metadata']['Weights'] in ('in1k torchvision', 'in1k official', 'in1k decomposed', 'scratch')
    for c in meta['Collections']:
        assert (REPO / c['README']).is_file()


@pytest.mark.parametrize('folder', zoo.ZOO_FOLDERS)
def test_every_table_lists_every_config(folder):
    readmes = [REPO / 'configs' / folder / 'README.md', REPO / 'configs' / 'README.md', zoo.DOC]
    for readme in readmes:
        text = readme.read_text(encoding='utf-8')
        table = text[text.index(zoo.START) : text.index(zoo.END)]
        prefix = {folder: './', 'configs': f'./{folder}/'}.get(readme.parent.name, f'../configs/{folder}/')
        for p in ZOO:
            if p.parent.name == folder:
                assert f']({prefix}{p.name})' in table, (readme, p.name)
                assert (readme.parent / prefix / p.name).is_file()


def test_backbone_parameters_are_the_paper_counts():
    """Shared ResNets in the detectors have the official backbone counts (MobileNetV2 uses mmdet's layout: no bias
    and no stage-1 expansion, hence fewer than the official layout's counts)."""
    checked = 0
    for folder in zoo.ZOO_FOLDERS:
        for model in load(REPO / 'configs' / folder / 'metafile.yml')['Models']:
            name = model['Metadata']['Backbone']
            if name in PAPER_MODELS and name.startswith('ResNet'):
                assert model['Metadata']['Backbone Parameters'] == PAPER_MODELS[name].params, model['Name']
                checked += 1
            elif name in PAPER_MODELS:
                assert model['Metadata']['Backbone Parameters'] < PAPER_MODELS[name].params, model['Name']
    assert checked >= 10


@pytest.mark.parametrize(
    'stem, baseline',
    [
        ('faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco', 'faster-rcnn_r34-in1k_fpn_1x_coco'),
        ('faster-rcnn_r34-s48u1star_fpn_scratch-6x_coco', 'faster-rcnn_r34_fpn_scratch-6x_coco'),
        ('ssdlite_mobilenetv2-shared++_8xb24-scratch-600e_coco', 'ssdlite_mobilenetv2_8xb24-scratch-600e_coco'),
        ('faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes', 'faster-rcnn_r18_slim-fpn_scratch-8e_shapes'),
        ('faster-rcnn_r34-in1k_fpn_1x_coco', None),
        ('ssdlite_mobilenetv2_8xb24-scratch-600e_coco', None),
    ],
)
def test_baseline_of(stem, baseline):
    assert zoo.baseline_of(stem) == baseline


def test_weights_kind():
    assert zoo.weights_kind(dict(init_cfg=None)) == 'scratch'
    assert (
        zoo.weights_kind(dict(init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34')))
        == 'in1k torchvision'
    )
    assert (
        zoo.weights_kind(dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/netrl2_x.pth')))
        == 'in1k official'
    )
    assert (
        zoo.weights_kind(dict(init_cfg=dict(type='Pretrained', checkpoint='c/resnet34-in1k_to_x.pth')))
        == 'in1k decomposed'
    )
    with pytest.raises(ValueError, match='cannot tell'):
        zoo.weights_kind(dict(init_cfg=dict(type='Pretrained', checkpoint='mine.pth')))


def test_readme_without_markers_is_refused(tmp_path):
    with pytest.raises(ValueError, match='model-zoo:start'):
        zoo.with_table('# no markers\n', tmp_path / 'README.md', '| table |')
    text = f'# t\n\n{zoo.START}\nold\n{zoo.END}\n\nafter\n'
    assert zoo.with_table(text, tmp_path / 'README.md', 'new') == f'# t\n\n{zoo.START}\nnew\n{zoo.END}\n\nafter\n'


@pytest.mark.slow
def test_model_zoo_files_are_up_to_date(capsys):
    """Builds and measures every zoo config (minutes on 2 CPU cores): parameters and GMACs must be the listed ones."""
    code = zoo.main(['--check'])
    assert code == 0, capsys.readouterr().err[-3000:]
