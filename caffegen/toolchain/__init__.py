"""Caffe itself: where it is, its schema, pycaffe, and how caffegen builds it.

* :mod:`.locate`      :func:`locate` the Caffe to drive, :func:`caffe_pb2`, :func:`import_caffe`;
* :mod:`.build`       fetch the verified source, fix, build into the cache (CPU or CUDA), keyed by source + flags;
* :mod:`.upstream`    Caffe's own files the build does not need (tools/extra, the Model Zoo's nets), from the same source;
* :mod:`.fixes`       the fix-set applied to the source (and :mod:`.fixes_cuda` for the CUDA variant);
* :mod:`.bundle`      a cache entry as one relocatable folder for a GPU host.
"""
from .locate import CaffeInstall, caffe_pb2, find, import_caffe, locate

__all__ = ["CaffeInstall", "caffe_pb2", "find", "import_caffe", "locate"]
