"""StandardizeImage: every channel gets the stated mean and spread, whatever the image's brightness and contrast."""

import numpy as np
import pytest
from mmengine.config import Config

from mmbasis.datasets import StandardizeImage


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # three channels with different means and spreads, as the two aerial scenes have
    base = rng.normal(size=(64, 80, 3)) * np.array([20.0, 35.0, 50.0]) + np.array([90.0, 120.0, 140.0])
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def test_channels_get_the_target_statistics():
    out = StandardizeImage(mean=128, std=40)(dict(img=_image()))['img']
    assert out.dtype == np.uint8 and out.shape == (64, 80, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), 128, atol=1.0)
    np.testing.assert_allclose(out.reshape(-1, 3).std(0), 40, atol=1.0)


def test_brightness_and_contrast_are_removed():
    img = _image(1)
    # the same scene brighter and with less contrast, differently per channel (affine, nothing clipped)
    shifted = img.astype(np.float32) * np.array([0.8, 0.9, 0.7]) + np.array([30.0, 10.0, 40.0])
    assert shifted.min() >= 0 and shifted.max() <= 255
    t = StandardizeImage()
    a = t(dict(img=img))['img'].astype(int)
    b = t(dict(img=np.rint(shifted).astype(np.uint8)))['img'].astype(int)
    assert np.abs(a - b).max() <= 3  # rounding of the shifted input only
    assert np.abs(img.astype(int) - np.rint(shifted).astype(int)).max() > 20  # the inputs really differed


def test_constant_channel_and_grey_image():
    img = np.full((8, 8, 3), 7, np.uint8)
    img[..., 1] = np.arange(10, 74, dtype=np.uint8).reshape(8, 8)
    out = StandardizeImage(mean=100)(dict(img=img))['img']
    assert (out[..., 0] == 100).all() and (out[..., 2] == 100).all()
    grey = StandardizeImage()(dict(img=img[..., 1]))['img']
    assert grey.shape == (8, 8) and abs(float(grey.mean()) - 128) < 1.5


def test_black_padding_is_left_out_and_stays_black():
    img = _image(2)
    padded = np.zeros((64, 200, 3), np.uint8)  # a border tile: 60 % of it black padding
    padded[:, :80] = img
    out = StandardizeImage()(dict(img=padded))['img']
    assert (out[:, 80:] == 0).all()
    np.testing.assert_array_equal(out[:, :80], StandardizeImage()(dict(img=img))['img'])  # as without the padding
    # counting the padding would stretch the content towards white
    counted = StandardizeImage(pad_max=None)(dict(img=padded))['img']
    assert counted[:, :80].mean() > out[:, :80].mean() + 40
    blank = np.zeros((4, 4, 3), np.uint8)
    assert (StandardizeImage()(dict(img=blank))['img'] == 0).all()


@pytest.mark.parametrize(
    'kwargs, needle',
    [
        (dict(mean=-1), 'mean=-1'),
        (dict(std=0), 'std=0'),
        (dict(eps=300), 'eps=300'),
        (dict(std='5'), "std='5'"),
        (dict(pad_max=255), 'pad_max=255'),
        (dict(pad_max=1.5), 'pad_max=1.5'),
    ],
)
def test_bad_arguments_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as info:
        StandardizeImage(**kwargs)
    assert 'allowed' in str(info.value)


def test_bad_image_is_named():
    with pytest.raises(ValueError, match=r'\(4,\)'):
        StandardizeImage()(dict(img=np.zeros(4, np.uint8)))


def test_trees_pipelines_standardise_whole_tiles_first():
    cfg = Config.fromfile('configs/_base_/datasets/deepforest_trees.py')
    for pipeline in (cfg.trees_train_pipeline, cfg.trees_test_pipeline):
        assert [step['type'] for step in pipeline[:2]] == ['LoadImageFromFile', 'StandardizeImage']
    train, test = cfg.trees_train_pipeline[1], cfg.trees_test_pipeline[1]
    assert train == test  # the same statistics at training and test time


def test_scene_statistics_names_a_missing_config(capsys):
    from experiments.scene_statistics import main

    with pytest.raises(SystemExit) as info:
        main(['configs/no_such_config.py'])
    assert info.value.code == 2 and 'no such config: configs/no_such_config.py' in capsys.readouterr().err
