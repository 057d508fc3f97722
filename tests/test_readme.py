"""The README, read as a new user reads it: its training/testing commands run as written, and nothing a user reads
points outside the repository."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
# what a user of the package reads
USER_DOCS = [README, *sorted((REPO / 'docs').glob('*.md')), *sorted((REPO / 'configs').rglob('README.md'))]
# commands of the training section that take mmengine's --cfg-options
RUNS_A_CONFIG = re.compile(r'^(python (tools|\$MMDET_TOOLS)/(train|test)\.py|bash tools/dist_(train|test)\.sh) ')


def section(title: str) -> str:
    text = README.read_text(encoding='utf-8')
    start = text.index(f'\n## {title}\n')
    end = text.find('\n## ', start + 1)
    return text[start : end if end > 0 else len(text)]


def bash_blocks(text: str) -> list:
    return re.findall(r'```bash\n(.*?)```', text, flags=re.S)


@pytest.mark.parametrize('path', USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_user_docs_stay_inside_the_repository(path):
    text = path.read_text(encoding='utf-8')
    assert '../shared' not in text and 'shared/reference' not in text
    assert not re.search(r'(?<![\w.])/(work|root|tmp)/', text), 'a path of a development machine'
    for target in re.findall(r'\]\((?!https?://|#)([^)]+)\)', text):  # relative links resolve inside the repo
        resolved = (path.parent / target.split('#')[0]).resolve()
        assert resolved.is_relative_to(REPO) and resolved.exists(), target


def smoke_script(block: str, data: str) -> str:
    """The block, with tiny data and one short schedule appended to every command that runs a config."""
    options = (
        f'train_dataloader.dataset.data_root={data}/ val_dataloader.dataset.data_root={data}/ '
        f'test_dataloader.dataset.data_root={data}/ val_evaluator.ann_file={data}/val/annotation.json '
        f'test_evaluator.ann_file={data}/val/annotation.json train_dataloader.dataset.num_images=4 '
        'val_dataloader.dataset.num_images=2 test_dataloader.dataset.num_images=2 train_dataloader.dataset.img_size=64 '
        'val_dataloader.dataset.img_size=64 test_dataloader.dataset.img_size=64 train_dataloader.batch_size=2 '
        'model.test_cfg.rcnn.score_thr=0.0'
    )
    lines = []
    for line in block.splitlines():
        command = line.strip()
        lines.append(f'{command} --cfg-options {options}' if RUNS_A_CONFIG.match(command) else command)
    return 'set -euo pipefail\n' + '\n'.join(lines) + '\n'


def test_training_section_has_the_commands_users_expect():
    block = '\n'.join(bash_blocks(section('Training and testing')))
    assert block.startswith('source .venv/bin/activate')
    for needed in (
        'tools/train.py',
        'tools/test.py',
        '--resume',
        'tools/dist_train.sh',
        'tools/dist_test.sh',
        'tools/image_demo.py',
        '$MMDET_TOOLS/train.py',
        '$MMDET_TOOLS/test.py',
    ):
        assert needed in block, needed
    script = smoke_script(block, '/x')
    assert script.count('--cfg-options') == 7  # every command that runs a config gets the smoke options


@pytest.mark.slow
def test_training_section_runs_as_written(tmp_path):
    """Run the block in a fresh shell that did only what the README says (activate the environment), in a folder
    holding the repository's tools and configs (so the run's work_dirs/ and outputs/ stay out of the checkout)."""
    for name in ('tools', 'configs', '.venv'):
        (tmp_path / name).symlink_to(REPO / name)
    data = tmp_path / 'data' / 'shapes'  # where the README's image_demo line looks for an image
    (block,) = bash_blocks(section('Training and testing'))
    clean_env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'LANG': 'C.UTF-8'}
    proc = subprocess.run(
        ['bash', '-c', smoke_script(block, str(data))],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    work = tmp_path / 'work_dirs' / 'faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes'
    assert (work / 'epoch_8.pth').is_file()
    assert any((tmp_path / 'work_dirs' / 'dist').glob('epoch_*.pth'))
    assert any((tmp_path / 'work_dirs' / 'mmdet_train').glob('epoch_*.pth'))
    assert (tmp_path / 'outputs' / 'vis' / '000000.png').is_file()
    assert (tmp_path / 'outputs' / 'preds' / '000000.json').is_file()
    assert proc.stdout.count('coco/bbox_mAP') + proc.stderr.count('coco/bbox_mAP') >= 4  # every test ran COCO eval
