"""Data for Caffe's input layers.

* :mod:`.lists`    image folders (or a CSV) -> stratified, shuffled list files;
* :mod:`.demo`     the deterministic synthetic demo image set;
* :mod:`.prepare`  the LMDB fast path, built with Caffe's own ``convert_imageset``;
* :mod:`.augment`  offline augmented copies of the train images, cached by content;
* :mod:`.sources`  a spec's ``[data]`` table -> :class:`~.sources.PreparedData` (lists made once).
"""
from .lists import ListSet, scan, write_lists

__all__ = ["ListSet", "scan", "write_lists"]
