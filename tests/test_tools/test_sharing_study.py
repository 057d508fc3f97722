"""tools/analysis_tools/sharing_study.py on a tiny grid: two cells, one seed, two iterations per run."""

import csv
import json
import os.path as osp

import pytest

from tests.helpers import load_tool

study = load_tool('tools/analysis_tools/sharing_study.py')


def _options(data: str):
    size = 'scale=(64,64)'
    return [
        f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.dataset.num_images=4',
        'train_dataloader.dataset.img_size=64',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={data}',
        'val_dataloader.dataset.num_images=2',
        'val_dataloader.dataset.img_size=64',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.num_images=2',
        'test_dataloader.dataset.img_size=64',
        f'val_evaluator.ann_file={data}/val/annotation.json',
        f'test_evaluator.ann_file={data}/val/annotation.json',
        f'train_dataloader.dataset.pipeline.2.{size}',
        f'val_dataloader.dataset.pipeline.1.{size}',
        f'test_dataloader.dataset.pipeline.1.{size}',
        'model.backbone.base_channels=32',
        'model.neck.in_channels=[32,64,128,256]',
        'param_scheduler.0.end=1',
        'default_hooks.logger.interval=1',
    ]


@pytest.mark.slow
def test_tiny_grid_writes_csv_summary_png_and_skips_finished_runs(tmp_path, capsys):
    out = str(tmp_path / 'study')
    argv = [
        '--cells',
        'r18',
        'r18-s16u1-noreg',
        '--seeds',
        '0',
        '--epochs',
        '1',
        '--sv-every',
        '1',
        '--out-dir',
        out,
        '--work-root',
        str(tmp_path / 'work'),
        '--cfg-options',
        *_options(str(tmp_path / 'data')),
    ]
    assert study.main(argv + ['--dry-run']) == 0
    listing = capsys.readouterr().out
    assert '2 runs' in listing and '2 to run' in listing and listing.count('[pending]') == 2
    assert not osp.exists(osp.join(out, 'runs.csv'))  # a dry run trains nothing

    assert study.main(argv) == 0
    with open(osp.join(out, 'runs.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(r['cell'], r['seed'], r['regularizer']) for r in rows] == [
        ('r18', '0', '0'),
        ('r18-s16u1-noreg', '0', '0'),
    ]
    plain, shared = rows
    assert int(shared['backbone_params']) < int(plain['backbone_params'])  # sharing saves parameters
    assert int(plain['iters']) == 2 and 0 <= float(plain['bbox_mAP']) <= 1
    assert plain['l_orth_final'] == '' and shared['l_orth_final'] != ''  # only the shared backbone has bases
    assert shared['loss_orth_final'] == ''  # regulariser off: no loss_orth in the loss
    assert float(shared['sigma_max']) >= float(shared['sigma_min']) > 0
    assert osp.isfile(osp.join(out, 'sharing_study.png')) and osp.isfile(osp.join(out, 'summary.md'))
    assert 'ResNet-18 S16U1 | off | 1 |' in open(osp.join(out, 'summary.md')).read()

    capsys.readouterr()
    assert study.main(argv) == 0  # a restart skips the finished runs
    assert '2 already in' in capsys.readouterr().out
    with open(osp.join(out, 'runs.csv'), newline='') as f:
        assert len(list(csv.DictReader(f))) == 2


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        study.main(['--cells', 'r99'])
    assert "unknown cells ['r99']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study.main(['--epochs', '0'])
    assert '--epochs 0 must be >= 1' in capsys.readouterr().err


@pytest.mark.slow
def test_warm_start_study_decomposes_the_plain_run_and_fine_tunes(tmp_path, capsys):
    """A plain run of the study (2 epochs, checkpoint after epoch 1), then its warm start (1 more epoch)."""
    data, out, work = str(tmp_path / 'data'), str(tmp_path / 'study'), str(tmp_path / 'work')
    options = _options(data)
    assert (
        study.main(
            [
                '--cells',
                'r18',
                '--seeds',
                '0',
                '--epochs',
                '2',
                '--val-interval',
                '1',
                '--out-dir',
                out,
                '--work-root',
                work,
                '--cfg-options',
                *options,
            ]
        )
        == 0
    )
    assert osp.isfile(osp.join(work, 'r18_seed0_2e', 'epoch_1.pth'))
    warm = load_tool('tools/analysis_tools/warm_start_study.py')
    warm_out = str(tmp_path / 'warm')
    argv = [
        '--pairs',
        'r18:r18-s16u1',
        '--seeds',
        '0',
        '--from-epoch',
        '1',
        '--epochs',
        '1',
        '--val-interval',
        '1',
        '--study-csv',
        osp.join(out, 'runs.csv'),
        '--study-work-root',
        work,
        '--work-root',
        str(tmp_path / 'w2'),
        '--out-dir',
        warm_out,
        '--images',
        osp.join(data, 'train', 'images'),
        '--cfg-options',
        *options,
    ]
    assert warm.main(argv) == 0
    with open(osp.join(warm_out, 'runs.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]['cell'] == 'r18-s16u1-warm' and int(rows[0]['iters']) == 2
    assert 0 <= float(rows[0]['weight_error']) < 1 and len(json.loads(rows[0]['stage_errors'])) == 4
    assert osp.isfile(osp.join(warm_out, 'warm_start.png')) and osp.isfile(osp.join(warm_out, 'summary.md'))
    capsys.readouterr()
    assert warm.main(argv) == 0 and '1 done, 0 to run' in capsys.readouterr().out


def test_warm_start_without_the_plain_runs_is_one_error_line(tmp_path, capsys):
    warm = load_tool('tools/analysis_tools/warm_start_study.py')
    argv = ['--pairs', 'r18:r18-s16u1', '--seeds', '0', '--study-work-root', str(tmp_path / 'none')]
    assert warm.main(argv + ['--out-dir', str(tmp_path / 'out'), '--work-root', str(tmp_path / 'w')]) == 1
    err = capsys.readouterr().err
    assert 'plain checkpoint(s) to decompose do not exist' in err and 'sharing_study.py --epochs 24 --cells r18' in err


def test_schedule_check_pairs_runs_of_the_same_cell_and_seed_and_shows_their_last_validations():
    def row(cell, seed, epochs, curve):
        return dict(
            cell=cell, seed=str(seed), epochs=str(epochs), bbox_mAP=str(curve[-1][2]), val_curve=json.dumps(curve)
        )

    study_rows = [row('r18', 0, 24, [[21, 1680, 0.791], [24, 1920, 0.806]]), row('r34', 1, 24, [[24, 1920, 0.8]])]
    longer = row('r18', 0, 48, [[39, 3120, 0.82], [42, 3360, 0.817], [45, 3600, float('nan')], [48, 3840, 0.822]])
    unmatched = row('r34', 0, 48, [[48, 3840, 0.9]])  # no study run of r34 seed 0: no line
    table = study.schedule_check(study_rows, [unmatched, longer])
    lines = [ln for ln in table.splitlines() if ln.startswith('| ResNet')]
    assert lines == [
        '| ResNet-18, seed 0 | 48 epochs: 0.822 | 24 epochs: 0.806 | +0.016 | '
        '0.820 (e39), 0.817 (e42), 0.822 (e48) | 0.791 (e21), 0.806 (e24) |'
    ]
    assert study.schedule_check(study_rows, []) == ''
