"""mmdet 3.3's ``SSDHead`` with its inference bug fixed.

In mmdet 3.3.0, ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls``, which ``SSDHead`` never
defines (it computes its classification loss with ``F.cross_entropy``), so every SSD/SSDLite model fails
in ``predict`` - validation, testing, inference - with ``AttributeError: 'SSDHead' object has no attribute
'loss_cls'`` (open-mmlab/mmdetection#11780, #11305; unfixed in 3.3.0).
"""

from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class FixedSSDHead(SSDHead):
    """``SSDHead`` (same arguments, parameters and state-dict keys) whose ``predict`` works on mmdet 3.3.

    ``loss_cls = None`` makes mmdet's ``getattr(self.loss_cls, 'custom_cls_channels', False)`` False, which is
    what an SSD head means: softmax scores, no custom classification channels. Training is unchanged.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_cls = None
