"""``cosine``: a half cosine from base_lr to ``min_lr`` over the run, trained as a polyline of ``inv`` pieces no
iteration of which is further than the tolerance (1% of base_lr) from the curve."""
from __future__ import annotations

from .base import ToMinLr
from .pieces import cosine_curve, polyline

TOLERANCE = 0.01       # a smooth schedule's polyline stays within this fraction of base_lr


class Cosine(ToMinLr):
    name = "cosine"
    stretched = True

    def ideal(self, base_lr, max_iter, p, its):
        return cosine_curve(p["min_lr"], base_lr, 0, int(max_iter))(its)

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        n = int(max_iter)
        return polyline(cosine_curve(p["min_lr"], base_lr, 0, n), start, n, tol, "cosine", floor=p["min_lr"])

    def describe(self):
        return (f"min_lr 0; a polyline within {TOLERANCE:.0%} of base_lr", "min_lr")
