"""``python -m caffegen.toolchain``: fetch, fix and build Caffe into the cache (what ``make caffe`` runs)."""
import sys

from .build import main

sys.exit(main())
