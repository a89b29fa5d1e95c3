"""``linear``: a straight line from base_lr to ``min_lr`` at max_iter (one ``inv`` piece of power -1: exact)."""
from __future__ import annotations

from .base import Chained
from .pieces import line


class Linear(Chained):
    name = "linear"
    params = ("min_lr",)
    stretched = True

    def defaults(self, max_iter, base_lr):
        return {"min_lr": 0.0}

    def check(self, name, base_lr, max_iter, p):
        self.check_min_lr(name, base_lr, p)

    def ideal(self, base_lr, max_iter, p, its):
        return base_lr + (p["min_lr"] - base_lr) * its.astype(float) / int(max_iter)

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        n = int(max_iter)
        return [line(start, n, (0, base_lr), (n, p["min_lr"]), "linear decay")]

    def describe(self):
        return ("min_lr 0", "min_lr")
