"""Data transforms registered in mmdet's TRANSFORMS registry.

:class:`StandardizeImage` removes an image's global brightness and contrast (per channel) before anything else
sees it. Aerial scenes taken on other flights differ mostly in exactly that (the two deepforest scenes: channel
means 23-42 grey levels apart, standard deviations 1.3-1.8x apart; ``docs/studies/real_images.md``), more than
mmdet's ``PhotoMetricDistortion`` simulates, so a detector trained on one scene sees the other one shifted out of
its training distribution. Standardising every image the same way at training and test time takes that shift out
of the input instead of hoping the augmentation covers it.
"""

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class StandardizeImage(BaseTransform):
    """Give every channel of an image a fixed mean and standard deviation.

    For each channel ``c`` of ``results['img']`` (H, W, C):
    ``img[..., c] = (img[..., c] - mean_c) / max(std_c, eps) * std + mean``, where ``mean_c`` and ``std_c`` are that
    image's own statistics, then clipped to [0, 255] and rounded back to ``uint8``, so every later transform
    (photometric distortion, crops) and the data preprocessor's fixed normalisation see an ordinary 8-bit image.
    Put it right after ``LoadImageFromFile``, in the training and the test pipeline alike, so that the statistics
    are those of the whole image (tile), not of a crop.

    Args:
        mean: the mean grey level every channel gets (0-255).
        std: the standard deviation every channel gets (> 0); about 2.5 standard deviations fit between the
            mean and the clipping limits at the defaults.
        eps: the smallest standard deviation divided by (a constant channel stays constant).

    Required keys: ``img``. Modified keys: ``img``.
    """

    def __init__(self, mean: float = 128.0, std: float = 50.0, eps: float = 1.0) -> None:
        checks = (('mean', mean, 'a number in [0, 255]', 0.0), ('std', std, 'a number in (0, 255]', None))
        for name, value, allowed, low in checks + (('eps', eps, 'a number in (0, 255]', None),):
            ok = isinstance(value, (int, float)) and value <= 255 and (value >= low if low is not None else value > 0)
            if not ok:
                raise ValueError(f'StandardizeImage: {name}={value!r}; allowed: {allowed}')
        self.mean, self.std, self.eps = float(mean), float(std), float(eps)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            got = getattr(img, 'shape', type(img).__name__)
            raise ValueError(f'StandardizeImage: results["img"] must be an (H, W) or (H, W, C) array, got {got}')
        pixels = img.astype(np.float32)
        axes = (0, 1)
        channel_mean = pixels.mean(axis=axes, keepdims=True)
        channel_std = np.maximum(pixels.std(axis=axes, keepdims=True), self.eps)
        out = (pixels - channel_mean) / channel_std * self.std + self.mean
        results['img'] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(mean={self.mean}, std={self.std}, eps={self.eps})'
