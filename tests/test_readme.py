"""The README as a front page, read as a new user reads it: short, no generated tables, its numbers those the model
zoo measured, its config snippet builds in a fresh interpreter that imports mmbasis only through the config's
``custom_imports``, its two commands are the Makefile's, and nothing it links to is outside the repository."""

import json
import re
import subprocess
import sys

from tests.test_docs import REPO, fenced_blocks, markdown_tables, section, stays_inside_the_repository

README = REPO / 'README.md'
MAX_BYTES = 10 * 1024


def readme() -> str:
    return README.read_text(encoding='utf-8')


def test_readme_is_a_front_page():
    text = readme()
    assert len(text.encode('utf-8')) <= MAX_BYTES, f'README.md has {len(text.encode())} bytes, at most {MAX_BYTES}'
    # generated tables live in docs pages (docs/development.md#generated-blocks), never in the README
    assert not re.search(r'<!--\s*[\w-]+:(start|end)\s*-->', text)
    for heading in ('What you get', 'Two commands', 'Into an existing mmdet environment', 'Documentation'):
        assert section(text, heading).strip(), heading
    assert re.search(r'!\[[^\]]+\]\(docs/[^)]+\.(jpg|png)\)', text.split('\n## ')[0]), 'a picture near the top'


def test_readme_stays_inside_the_repository():
    stays_inside_the_repository(README)


def test_readme_links_every_documentation_page():
    """Every page of the docs' tables of contents is one click from the front page, except the API reference,
    which exists only in the built site."""
    linked = {(README.parent / t).resolve() for t in re.findall(r'\]\((docs/[^)#]+\.md)', readme())}
    pages = {p.resolve() for p in (REPO / 'docs').rglob('*.md') if 'results' not in p.parts and '_build' not in p.parts}
    missing = pages - linked - {(REPO / 'docs/api/index.md').resolve()}
    # a study page is reached through the studies' index
    missing -= {p for p in missing if p.parent.name == 'studies'}
    assert not missing, sorted(str(p.relative_to(REPO)) for p in missing)


def test_two_commands_are_the_makefile_targets():
    (block,) = fenced_blocks(section(readme(), 'Two commands'), 'bash')
    commands = [line.split('#')[0].strip() for line in block.splitlines()]
    assert commands == ['make demo', 'make test']
    makefile = (REPO / 'Makefile').read_text(encoding='utf-8')
    assert re.search(r'^demo: env\n\t@\$\(PY\) tools/demo.py$', makefile, flags=re.M)
    assert re.search(r'^test: lint docs\n\t@\$\(PY\) -m pytest tests$', makefile, flags=re.M)
    assert re.search(r'^docs: env\n\t@\$\(PY\) -m sphinx -W --keep-going .*-b html docs ', makefile, flags=re.M)


def test_readme_backbone_numbers_are_the_model_zoo_measurements():
    """The front page's parameter table repeats numbers of the model-zoo table (written by the zoo script); both
    must agree, so a rerun of the script that changes the zoo page fails here until the README follows."""
    zoo = {}
    for row in markdown_tables((REPO / 'docs' / 'model_zoo.md').read_text(encoding='utf-8')):
        if 'Backbone params' in row:
            zoo.setdefault(row['Backbone'].replace('\\*', '*'), row['Backbone params'].split(' (')[0])
    rows = [r for r in markdown_tables(section(readme(), 'What you get')) if 'paper backbone' in r]
    assert len(rows) == 7
    for row in rows:
        name, plain = row['paper backbone'].replace('\\*', '*'), row['plain backbone']
        params = [row['parameters'], row['parameters 2']]  # the paper backbone's, the plain one's
        assert params == [zoo[name], zoo[plain]], (name, params, zoo[name], zoo[plain])
        ours, theirs = (int(p.replace(',', '')) for p in params)
        assert row['saved'] == f'{100 * (1 - ours / theirs):.1f} %', name


SNIPPET_CHECK = r"""
import json, sys
from mmengine.config import Config
assert 'mmbasis' not in sys.modules
cfg = Config.fromfile(sys.argv[1])  # imports cfg.custom_imports
assert 'mmbasis' in sys.modules, 'custom_imports did not import mmbasis'
from mmengine.registry import init_default_scope
from mmdet.registry import HOOKS, MODELS
init_default_scope('mmdet')
detector = MODELS.build(cfg.model)  # builds; init_weights (the Pretrained checkpoint) is not called
hooks = [type(HOOKS.build(h)).__name__ for h in cfg.custom_hooks]
params = sum(p.numel() for p in detector.backbone.parameters())
print(json.dumps(dict(detector=type(detector).__name__, backbone=type(detector.backbone).__name__,
                      params=params, hooks=hooks, init_cfg=cfg.model.backbone.init_cfg)))
"""


def test_config_snippet_builds_with_custom_imports_only(tmp_path):
    """The README's config, as a user saves it next to an mmdet install: mmbasis is imported by the config's
    ``custom_imports`` alone (a fresh interpreter), and the detector has the backbone and parameter count the README
    states. Needs ``SharedBasisResNet(arch=...)`` (issue 22, code side)."""
    (snippet,) = fenced_blocks(section(readme(), 'Into an existing mmdet environment'), 'python')
    config = tmp_path / 'my_config.py'
    config.write_text(snippet, encoding='utf-8')
    proc = subprocess.run(
        [sys.executable, '-c', SNIPPET_CHECK, str(config)],
        cwd=tmp_path,
        env={'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1', 'HOME': str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    (row,) = [r for r in markdown_tables(readme()) if r.get('paper backbone') == 'ResNet34-S48U1\\*']
    assert built['detector'] == 'FasterRCNN' and built['backbone'] == 'SharedBasisResNet'
    assert built['params'] == int(row['parameters'].replace(',', ''))
    assert built['hooks'] == ['OrthogonalityRegularizerHook']
    assert built['init_cfg']['type'] == 'Pretrained'
    # the file the zoo's configs expect the converted official weights in (docs/model_zoo.md#imagenet-weights)
    base = (REPO / 'configs' / '_base_' / 'backbones' / 'r34-s48u1star.py').read_text(encoding='utf-8')
    assert f"in1k_checkpoint = '{built['init_cfg']['checkpoint']}'" in base
