"""``python -m caffegen.toolchain``: fetch, fix and build Caffe into the cache (what ``make caffe`` runs); with
``--bundle DIR``, the lean variant as a bundle for a GPU host (what ``make gpu-bundle`` runs)."""
import sys

if "--bundle" in sys.argv[1:]:
    from .bundle import main
else:
    from .build import main

sys.exit(main())
