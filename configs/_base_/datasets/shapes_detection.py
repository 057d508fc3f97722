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
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        num_images=320,
        img_size=img_size,
        seed=0,
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        num_images=64,
        img_size=img_size,
        seed=1,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'val/annotation.json', metric='bbox', format_only=False)
test_evaluator = val_evaluator
