"""Data for Caffe's input layers: image folders -> list files (:mod:`.lists`), the synthetic demo set
(:mod:`.demo`), and the LMDB fast path built with Caffe's own ``convert_imageset`` (:mod:`.prepare`)."""
from .lists import ListSet, scan, write_lists

__all__ = ["ListSet", "scan", "write_lists"]
