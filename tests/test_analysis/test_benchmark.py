"""The benchmark's measurements (mmbasis.analysis): peak memory, the training step as the configs train, the detector
pairs; the command that runs them: tests/test_tools/test_benchmark_backbones.py."""

import torch
from mmdet.testing import demo_mm_inputs

from mmbasis.analysis import REGULARISER as BENCH_REGULARISER
from mmbasis.analysis import detectors
from mmbasis.analysis.backbones import build_backbone, peak_train_memory, regulariser_for, train_step_fn
from tests.helpers import REGULARISER


def test_peak_memory_counts_activations_and_parameters():
    small, large = torch.randn(2, 3, 32, 32), torch.randn(4, 3, 128, 128)
    model = build_backbone(dict(type='ResNet', depth=18))
    params = sum(p.numel() * 4 for p in model.parameters())
    peak_small = peak_train_memory(model, small, torch.device('cpu'))
    peak_large = peak_train_memory(model, large, torch.device('cpu'))
    assert peak_small > 2 * params  # weights and their gradients at least
    assert peak_large > peak_small + 10 * 2**20  # 32x the pixels: activations grow by tens of MiB


def test_the_training_step_carries_the_regulariser_exactly_as_the_configs_enable_it():
    """Every config of ours enables the regulariser with one setting (tests/test_configs/test_pairs.py checks each
    config against it); the backbone mode's training step adds exactly that: its gradients are the task's plus
    loss_weight times those of L_orth (pooling 'paper')."""
    from mmbasis.models import orthogonality_loss

    assert BENCH_REGULARISER == REGULARISER
    model = build_backbone(dict(type='SharedBasisResNet', depth=18, shared_rank=4, unique_rank=1))
    with torch.no_grad():  # away from the orthogonal start, so that the term has a gradient
        for p in model.shared_bases().values():
            p.mul_(1.5)
    x = torch.randn(2, 3, 32, 32)
    hook, groups = regulariser_for(model)
    assert hook.loss_weight == 10.0 and hook.pooling == 'paper' and len(groups) == 4
    assert regulariser_for(build_backbone(dict(type='ResNet', depth=18))) == (None, [])

    def grads(regulariser):
        train_step_fn(model, x, regulariser)()
        return {n: p.grad.clone() for n, p in model.shared_bases().items()}

    plain, with_reg = grads((None, [])), grads((hook, groups))
    model.zero_grad()
    (10.0 * orthogonality_loss(groups)[0]).backward()
    for name, g in model.shared_bases().items():
        assert (with_reg[name] - plain[name] - g.grad).abs().max() <= 1e-4 * g.grad.abs().max() + 1e-6
        assert g.grad.abs().max() > 0


def test_untrained_detector_pairs_differ_in_the_backbone_only_and_have_zeroed_heads():
    config = 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'
    (ours, plain), cfg = detectors.zeroed_pair(config)
    assert type(ours.backbone).__name__ == 'SharedBasisResNet' and type(plain.backbone).__name__ == 'ResNet'
    assert type(ours.neck) is type(plain.neck) and type(ours.roi_head) is type(plain.roi_head)
    # heads zeroed on both sides, so that NMS and RoIAlign do the same work whatever the random backbones give
    assert not any(p.any() for m in (ours, plain) for h in (m.rpn_head, m.roi_head) for p in h.parameters())
    assert any(p.any() for p in ours.neck.parameters())
    # det-train's loss is the runner's: the config's regulariser hook adds loss_orth to ours
    hook = detectors._regulariser(cfg, ours)
    assert hook.loss_weight == 10.0 and len(hook.groups) == 4
    data = ours.data_preprocessor(demo_mm_inputs(batch_size=1, image_shapes=[(3, 64, 64)], num_classes=3), True)
    losses = ours(data['inputs'], data['data_samples'], mode='loss')
    assert losses['loss_orth'].item() > 0


def test_a_row_of_an_end_to_end_run_gives_each_sides_images_per_second():
    from mmbasis.analysis.report import row_text

    t = dict(ours_ms=400.0, theirs_ms=800.0, ratio=0.5, lo=0.4, hi=0.6, images=8)
    assert 'images/s ours 20.0, theirs 10.0' in row_text('a.py', 'b.py', 'e2e-openvino', t)
    assert 'images/s' not in row_text('a.py', 'b.py', 'eval', dict(t, images=None))
