"""``python -m caffegen.toolchain``: fetch, fix and build Caffe into the cache (what ``make caffe`` runs); with
``--bundle DIR``, the lean variant as a bundle for a GPU host (what ``make gpu-bundle`` runs); with
``--test-packages``, the Debian packages the tests need beside the build (what ``make test`` runs first)."""
import sys

if "--bundle" in sys.argv[1:]:
    from .bundle import main
elif "--test-packages" in sys.argv[1:]:
    from .build import test_packages_main as main
else:
    from .build import main

sys.exit(main())
