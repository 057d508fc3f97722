# The real-image dataset: tiles of two NEON airborne RGB scenes (Yellowstone, 2019) with tree-crown boxes in Pascal VOC
# XML, from the deepforest 2.1.0 wheel on PyPI (MIT licence, as the package states it), made on first use by
# DeepForestTreesDataset (mmbasis.datasets) under data/deepforest_trees/YELL2019/: 400-px tiles, the training tiles of
# one scene overlapping by half (132 tiles, 2,689 boxes), the 12 non-overlapping val (= test) tiles of the other
# (333 boxes); a box cut by a tile border is clipped, and marked difficult (ignored by the VOC metric) when less than
# half of it is visible.
#
# Only variables named trees_*: a config takes them next to one of mmdet's VOC configs (mmengine refuses keys that
# two bases both define), e.g. ``train_dataloader = dict(_delete_=True, **_base_.trees_train_dataloader)``.
#
# Small, dense objects (crowns of 8 to 108 px, median about 40): the tiles are upscaled, 1.5x to 2.5x at random for
# training (scale jitter; a median crown then spans 15 to 25 cells of the stride-4 level) and 2x for evaluation;
# training draws random 256x256 crops of the upscaled tiles with horizontal, vertical and diagonal flips (aerial
# images have no "up") and photometric distortion; evaluation runs on whole upscaled tiles (800x800) with mmdet's VOCMetric (AP at IoU 0.5, area mode) and CocoMetric (AP at IoU 0.5:0.95 and
# by object size; its ground truth comes from the data samples, difficult boxes become ignored regions).
trees_data_root = '{{fileDirname}}/../../../data/deepforest_trees/'
trees_classes = ('Tree',)
trees_tile = (400, 400)  # the tiler's default tile size
trees_crop = (256, 256)
trees_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='StandardizeImage', mean=128.0, std=50.0),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=trees_tile, ratio_range=(1.5, 2.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=trees_crop, allow_negative_crop=False),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25], direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackDetInputs'),
]
trees_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='StandardizeImage', mean=128.0, std=50.0),
    dict(type='Resize', scale_factor=2.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    # 'instances': CocoMetric builds its ground truth from the data samples (no COCO json for VOC data)
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances')),
]
trees_train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type='RepeatDataset',
        times=4,  # an epoch = 4 passes over the 129 training tiles with boxes = 129 iterations of 4 crops
        dataset=dict(
            type='DeepForestTreesDataset',
            split='train',
            data_root=trees_data_root,
            # mmdet's VOC configs drop boxes under 32 px (bbox_min_size): here that would drop 38 % of the trees
            filter_cfg=dict(filter_empty_gt=True, min_size=0),
            pipeline=trees_train_pipeline,
        ),
    ),
)
trees_val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='DeepForestTreesDataset',
        split='val',
        data_root=trees_data_root,
        test_mode=True,
        pipeline=trees_test_pipeline,
    ),
)
trees_test_dataloader = dict(trees_val_dataloader, dataset=dict(trees_val_dataloader['dataset'], split='test'))
trees_evaluator = [dict(type='VOCMetric', metric='mAP', eval_mode='area'), dict(type='CocoMetric', metric='bbox')]
# Evaluate an exponential moving average of the weights and BN statistics (mmdet's EMAHook and ExpMomentumEMA, as
# RTMDet and EfficientDet do; time constant about 200 iterations, 1.5 epochs): with batch 4 from scratch the raw
# weights' validations jump between epochs. Each shared basis is registered once, so it is averaged once per step.
trees_ema_hook = dict(
    type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.005, gamma=200, update_buffers=True, priority=49
)
# The schedule of every trees config, Faster R-CNN and SSD alike: SGD from scratch, 100 iterations of warm-up, 16
# epochs with the step x0.1 after 12 (8 epochs with the step after 6 stopped while the detectors still learnt:
# docs/studies/real_images.md), a checkpoint every 2 epochs; a config takes each as ``train_cfg =
# _base_.trees_train_cfg`` and so on.
trees_max_epochs = 16
trees_train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=trees_max_epochs, val_interval=2)
trees_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=trees_max_epochs, by_epoch=True, milestones=[12], gamma=0.1),
]
trees_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
trees_auto_scale_lr = dict(enable=False, base_batch_size=4)
trees_default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='SafeCheckpointHook', interval=2, max_keep_ckpts=2),
)
trees_log_processor = dict(type='ReadableLogProcessor', window_size=20)
