"""Caffe itself: where it is (:func:`locate`), its schema (:func:`caffe_pb2`), pycaffe (:func:`import_caffe`),
and how caffegen builds it (:mod:`caffegen.toolchain.build`)."""
from .locate import CaffeInstall, caffe_pb2, find, import_caffe, locate

__all__ = ["CaffeInstall", "caffe_pb2", "find", "import_caffe", "locate"]
