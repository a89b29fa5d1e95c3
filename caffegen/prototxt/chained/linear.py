"""``linear``: a straight line from base_lr to ``min_lr`` at max_iter (one ``inv`` piece of power -1: exact)."""
from __future__ import annotations

from .base import ToMinLr
from .pieces import line


class Linear(ToMinLr):
    name = "linear"
    stretched = True

    def ideal(self, base_lr, max_iter, p, its):
        return base_lr + (p["min_lr"] - base_lr) * its.astype(float) / int(max_iter)

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        n = int(max_iter)
        return [line(start, n, (0, base_lr), (n, p["min_lr"]), "linear decay")]

    def describe(self):
        return ("min_lr 0", "min_lr")
