# The generated "shapes" dataset (mmbasis.datasets.SyntheticShapesDataset, COCO format): filled rectangles,
# ellipses and triangles on noisy backgrounds, generated under data/shapes/ on first use from a seed
# (320 train / 64 val images of 160x160), evaluated with mmdet's CocoMetric (pycocotools).
dataset_type = 'SyntheticShapesDataset'
data_root = '{{fileDirname}}/../../../data/shapes/'
img_size = 160

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
_shapes = dict(type=dataset_type, data_root=data_root, img_size=img_size)
train_dataloader = dict(
    _loader,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        _shapes,
        split='train',
        num_images=320,
        seed=0,
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    _loader,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_shapes, split='val', num_images=64, seed=1, test_mode=True, pipeline=test_pipeline),
)
del _loader, _shapes  # helpers of this file only
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'val/annotation.json', metric='bbox', format_only=False)
test_evaluator = val_evaluator
