"""Single runs around a sweep, each a question about a net before or after tuning it.

* :mod:`.sanity`   can the net overfit a tiny subset (seed 003)? PASS, or FAIL with the likely causes;
* :mod:`.lrfind`   the LR range test: which decade of base_lr to search (seed 002);
* :mod:`.extend`   continue a run from its snapshot to a longer max_iter, followed as the sweep would;
* :mod:`.oneshot`  one short followed ``caffe train`` in a fresh folder (what sanity and lr-find run);
* :mod:`.timing`   the speed of a net here (an iteration, a test pass, a run's start): what a tune plans with;
* :mod:`.figures`  their figures (the range test's loss against lr, the sanity loss).
"""
