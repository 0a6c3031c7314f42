"""The data: the generated world and its pictures, the CS231n files written from it
(make-data), a run's data loaded from its spec, caption files of the three formats,
CNN image features, and ``fastcap prepare``. ``fastcap.coco_utils`` and
``fastcap.image_utils`` (the CS231n paths) belong here too."""
from .generated import generate_coco_data

__all__ = ["generate_coco_data"]
