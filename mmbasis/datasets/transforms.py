"""Data transforms registered in mmdet's TRANSFORMS registry.

:class:`StandardizeImage` removes an image's global brightness, contrast and colour balance (per channel) before
anything else sees it. Scenes taken on other flights, days or sites differ in exactly that (the two deepforest
scenes: blue channel mean 117 vs 140 grey levels, green 143 vs 150, red 130 vs 133; ``python -m
experiments.scene_statistics``), and mmdet's ``PhotoMetricDistortion`` shifts all channels alike. Standardising every
image the same way at training and test time takes such shifts out of the input; the price is that a tile's look
depends on its content (a tile of dark forest is brightened more than a tile of meadow).

Tiles at a scene's border are padded with black by :func:`mmbasis.datasets.make_tiled_voc` (6 of the 12 validation
tiles of the trees, 41-93 % of their area): such pixels are left out of the statistics and stay black, otherwise a
mostly padded tile would be stretched until its content saturates.
"""

from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class StandardizeImage(BaseTransform):
    """Give every channel of an image a fixed mean and standard deviation.

    For each channel ``c`` of ``results['img']`` (H, W, C):
    ``img[..., c] = (img[..., c] - mean_c) / max(std_c, eps) * std + mean``, where ``mean_c`` and ``std_c`` are that
    image's own statistics over its non-padding pixels, then clipped to [0, 255] and rounded back to ``uint8``, so
    every later transform (photometric distortion, crops) and the data preprocessor's fixed normalisation see an
    ordinary 8-bit image.
    Put it right after ``LoadImageFromFile``, in the training and the test pipeline alike, so that the statistics
    are those of the whole image (tile), not of a crop.

    Args:
        mean: the mean grey level every channel gets (0-255).
        std: the standard deviation every channel gets (> 0); about 2.5 standard deviations fit between the
            mean and the clipping limits at the defaults.
        eps: the smallest standard deviation divided by (a constant channel stays constant).
        pad_max: pixels whose every channel is at most this value are padding (black; JPEG keeps a padded area
            within a few grey levels of 0): left out of the statistics and set to 0. ``None``: no padding, every
            pixel counts. An image that is all padding is returned as it is.

    Required keys: ``img``. Modified keys: ``img``.
    """

    def __init__(self, mean: float = 128.0, std: float = 50.0, eps: float = 1.0, pad_max: Optional[int] = 4) -> None:
        checks = (('mean', mean, 'a number in [0, 255]', 0.0), ('std', std, 'a number in (0, 255]', None))
        for name, value, allowed, low in checks + (('eps', eps, 'a number in (0, 255]', None),):
            ok = isinstance(value, (int, float)) and value <= 255 and (value >= low if low is not None else value > 0)
            if not ok:
                raise ValueError(f'StandardizeImage: {name}={value!r}; allowed: {allowed}')
        if pad_max is not None and (
            not isinstance(pad_max, int) or isinstance(pad_max, bool) or not 0 <= pad_max < 255
        ):
            raise ValueError(f'StandardizeImage: pad_max={pad_max!r}; allowed: None or an integer in [0, 254]')
        self.mean, self.std, self.eps, self.pad_max = float(mean), float(std), float(eps), pad_max

    def transform(self, results: dict) -> dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            got = getattr(img, 'shape', type(img).__name__)
            raise ValueError(f'StandardizeImage: results["img"] must be an (H, W) or (H, W, C) array, got {got}')
        pixels = img.astype(np.float32)
        channels = pixels.reshape(img.shape[0], img.shape[1], -1)
        valid = np.ones(img.shape[:2], bool) if self.pad_max is None else channels.max(axis=2) > self.pad_max
        if not valid.any():
            return results
        values = channels[valid]  # (N, C): the image's own pixels
        channel_mean = values.mean(axis=0)
        channel_std = np.maximum(values.std(axis=0), self.eps)
        out = (channels - channel_mean) / channel_std * self.std + self.mean
        out[~valid] = 0
        results['img'] = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(img.shape)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(mean={self.mean}, std={self.std}, eps={self.eps}, pad_max={self.pad_max})'
