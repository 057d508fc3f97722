"""The documentation under docs/: it builds without a warning (broken links and anchors are warnings), the layout
page matches the tree, every generated block is on its page, the tests the reliability table names exist, the
training page's commands run as written, and nothing a user reads points outside the repository."""

import glob
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / 'docs'
# what a user of the package reads: the pages, the summaries the tools write next to their data, the zoo READMEs
PAGES = sorted(p for p in DOCS.rglob('*.md') if '_build' not in p.parts)
USER_DOCS = [*PAGES, *sorted((REPO / 'configs').rglob('README.md'))]
# generated blocks (`<!-- NAME:start -->` ... `<!-- NAME:end -->`) and the one page each lives on
BLOCKS = {
    'demo-output': 'get_started/demo.md',
    'demo-seeds': 'get_started/demo.md',
    'model-zoo': 'model_zoo.md',
    'warm-start-text': 'studies/warm_start.md',
    'warm-start': 'studies/warm_start.md',
    'sharing-study-24e': 'studies/sharing.md',
    'sharing-study-48e': 'studies/sharing.md',
    'sharing-study-8e': 'studies/real_images.md',
    'sharing-study-12e': 'studies/real_images.md',
    'sharing-study-16e': 'studies/real_images.md',
    'benchmark': 'speed.md',
    'benchmark-layers': 'speed.md',
    'benchmark-detectors': 'speed.md',
    **{f'benchmark-{run}': 'speed.md' for run in ('aligned', 'aligned-layers', 'runtimes-b1', 'runtimes-b8')},
    **{f'benchmark-{run}': 'speed.md' for run in ('end2end', 'detectors-b8')},
    'training-cost': 'cluster.md',
}
# the folders whose every sub-folder docs/layout.md must name
LAID_OUT = ('mmbasis', 'experiments', 'tools')


def _outside_fences(text: str):
    """``(line, inside_a_fenced_block)`` for every line of a Markdown text."""
    fence = None
    for line in text.splitlines():
        match = re.match(r'^\s*(`{3,}|~{3,})', line)
        if match and (fence is None or match.group(1).startswith(fence)):
            fence = None if fence else match.group(1)[:3]
            yield line, True
            continue
        yield line, fence is not None


def section(text: str, title: str) -> str:
    """The text under the heading ``title`` (any level) up to the next heading of the same or a higher level;
    ``ValueError`` when there is no such heading. Lines inside fenced code (e.g. ``# comments``) are no headings."""
    out, level = [], None
    for line, fenced in _outside_fences(text):
        heading = None if fenced else re.match(r'^(#{1,6}) (.*)$', line)
        if level is None:
            if heading and heading.group(2).strip() == title:
                level = len(heading.group(1))
            continue
        if heading and len(heading.group(1)) <= level:
            break
        out.append(line)
    if level is None:
        raise ValueError(f'no heading {title!r}')
    return '\n'.join(out) + '\n'


def fenced_blocks(text: str, language: str) -> list:
    """The contents of the fenced blocks of ``language`` (```bash, ```python, ...)."""
    return re.findall(rf'^```{language}\n(.*?)^```', text, flags=re.S | re.M)


def markdown_tables(text: str) -> list:
    """Every row of every table outside code, as ``{header: cell}``; a repeated header gets a number (``name 2``)."""
    rows, header, previous = [], None, None
    for line, fenced in _outside_fences(text):
        cells = None if fenced or not line.startswith('|') else [c.strip() for c in line.strip().strip('|').split('|')]
        if cells is None:
            header = previous = None
            continue
        if header is None and previous is not None and all(re.fullmatch(r':?-+:?', c) for c in cells):
            header = [
                name if name not in previous[:i] else f'{name} {previous[:i].count(name) + 1}'
                for i, name in enumerate(previous)
            ]
        elif header is not None:
            rows.append(dict(zip(header, cells)))
        previous = cells
    return rows


def stays_inside_the_repository(path: Path) -> None:
    """No pointer to the development machines' shared notes or paths; every relative link resolves to a file or
    folder of the repository (the docs build checks the anchors of the pages)."""
    text = path.read_text(encoding='utf-8')
    assert '../shared' not in text and 'shared/reference' not in text
    assert not re.search(r'(?<![\w.])/(work|root|tmp)/', text), 'a path of a development machine'
    for target in re.findall(r'\]\((?!https?://|#|mailto:)([^)\s]+)\)', text):
        resolved = (path.parent / target.split('#')[0]).resolve()
        assert resolved.is_relative_to(REPO) and resolved.exists(), target


@pytest.mark.parametrize('path', USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_user_docs_stay_inside_the_repository(path):
    stays_inside_the_repository(path)


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """What ``make docs`` runs, into a temporary folder: any warning (a link to a missing page, file or heading, a
    page in no table of contents, a docstring Sphinx cannot read, a module autodoc cannot import) fails."""
    out = tmp_path / 'html'
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', str(DOCS), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stderr.count('WARNING') == 0, proc.stderr[-6000:]
    for page in PAGES:
        rel = page.relative_to(DOCS).with_suffix('.html')
        assert (out / rel).is_file(), rel  # every page is built, the tools' summaries too
    # the API reference covers the package: one page per module, generated from the docstrings
    modules = {
        '.'.join(p.relative_to(REPO).with_suffix('').parts).removesuffix('.__init__')
        for p in (REPO / 'mmbasis').rglob('*.py')
        if '.mim' not in p.parts
    }
    built = {p.stem for p in (out / 'api' / 'generated').glob('mmbasis*.html')}
    assert modules <= built, sorted(modules - built)
    api = (out / 'api' / 'generated' / 'mmbasis.models.backbones.shared_resnet.html').read_text(encoding='utf-8')
    assert 'SharedBasisResNet' in api


def layout_paths() -> list:
    """The paths in the first column of docs/layout.md's tables."""
    text = (DOCS / 'layout.md').read_text(encoding='utf-8')
    return [p for row in markdown_tables(text) for p in re.findall(r'`([^`]+)`', row['path'])]


def test_layout_page_matches_the_tree():
    named = layout_paths()
    assert len(named) >= 30
    missing = [p for p in named if not glob.glob(str(REPO / p))]
    folders = sorted(
        str(d.relative_to(REPO)) + '/'
        for top in LAID_OUT
        for d in [REPO / top, *(REPO / top).rglob('*')]
        if d.is_dir() and not any(part.startswith(('.', '__')) for part in d.relative_to(REPO).parts)
    )
    unnamed = [f for f in folders if not any(p.startswith(f) for p in named)]
    assert not missing and not unnamed, f'named on the page but not in the tree: {missing}; not on the page: {unnamed}'


@pytest.mark.parametrize('marker', sorted(BLOCKS))
def test_generated_block_is_on_its_page_only(marker):
    """Each block once, on its page (where the tool writing it expects it), on no other page and not in the README."""
    start, end = f'<!-- {marker}:start -->', f'<!-- {marker}:end -->'
    text = (DOCS / BLOCKS[marker]).read_text(encoding='utf-8')
    assert text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end)
    elsewhere = [p for p in [REPO / 'README.md', *PAGES] if p != DOCS / BLOCKS[marker] and start in p.read_text()]
    assert not elsewhere, elsewhere


def test_reliability_table_names_tests_that_exist():
    """Every test the guarantees table names exists: a file, a folder, a glob, or ``file::test``; ``::test`` alone
    refers to the file named before it in the same cell, and a cell may not start with one."""
    rows = markdown_tables((DOCS / 'reliability.md').read_text(encoding='utf-8'))
    assert len(rows) >= 10
    for row in rows:
        current = None
        for ref in re.findall(r'`([^`]*(?:tests/|::)[^`]*)`', row['test']):
            path, _, name = ref.partition('::')
            current = path or current
            assert current and glob.glob(str(REPO / current)), ref
            if name:
                assert re.search(rf'^\s*def {name}\(', (REPO / current).read_text(), flags=re.M), ref


# the training page's commands that take mmengine's --cfg-options
RUNS_A_CONFIG = re.compile(r'^(python (tools|\$MMDET_TOOLS)/(train|test)\.py|bash tools/dist_(train|test)\.sh) ')


def training_block() -> str:
    (block,) = fenced_blocks((DOCS / 'get_started' / 'training.md').read_text(encoding='utf-8'), 'bash')
    return block


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


def test_training_page_has_the_commands_users_expect():
    block = training_block()
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
def test_training_page_runs_as_written(tmp_path):
    """Run the block in a fresh shell that did only what the installation page says (activate the environment), in
    a folder holding the repository's tools and configs (so the run's work_dirs/ and outputs/ stay out of the
    checkout)."""
    for name in ('tools', 'configs', '.venv'):
        (tmp_path / name).symlink_to(REPO / name)
    data = tmp_path / 'data' / 'shapes'  # where the page's image_demo line looks for an image
    clean_env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'LANG': 'C.UTF-8'}
    proc = subprocess.run(
        ['bash', '-c', smoke_script(training_block(), str(data))],
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
