"""The ``eval/`` folder of an evaluation, written whole into ``eval.tmp`` and then swapped in (a reader never sees
half of one):

    summary.json      what was evaluated (snapshot, list, images, device), top-1/top-5, the log's top-1 beside it,
                      precision/recall/F1/support/AP/AUC per class
    predictions.csv   one row per image: path, label, predicted, their probabilities, the top 5
    per_class.csv     precision, recall, F1, support, AP, AUC per class
    confusion.csv     counts[true, predicted] (rows sum to each class's support), confusion.png
    curves.csv        the one-vs-rest PR and ROC points per class, pr.png, roc.png
    scores.npz        raw scores, softmax probabilities and labels (what ``caffegen export tensorboard`` reads)
    index.html        all of it on one page, with a gallery of the most confident mistakes (thumbs/)
    net.prototxt      the TEST-phase net the forward pass ran
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import EVAL_SCORES, EVAL_SUMMARY
from ..paths import replace_dir
from .figures import confusion_figure, curves_figure
from .result import Evaluation

__all__ = ["write_evaluation", "summary"]


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _f(x) -> str:
    return "" if x is None or (isinstance(x, float) and x != x) else f"{float(x):.6g}"


def write_evaluation(ev: Evaluation, out_dir: Path, tmp: Path, mistakes: int = 48) -> Path:
    """Fill ``tmp`` (which already holds the net.prototxt the forward pass ran), then swap it in as ``out_dir``."""
    out_dir = Path(out_dir)
    m, names, labels = ev.measures, ev.names, ev.scores.labels
    probs, pred = m["probs"], m["pred"]
    s = summary(ev)
    (tmp / EVAL_SUMMARY).write_text(json.dumps(s, indent=2) + "\n", encoding="utf-8")
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    rows = [[i, ev.paths[i] if ev.paths else "", int(labels[i]), names[labels[i]], int(pred[i]), names[pred[i]],
             _f(probs[i, pred[i]]), _f(probs[i, labels[i]]), " ".join(map(str, top5[i]))] for i in range(len(labels))]
    (tmp / "predictions.csv").write_text(_csv(["index", "path", "label", "label_name", "predicted", "predicted_name",
                                               "p_predicted", "p_label", "top5"], rows), encoding="utf-8")
    (tmp / "per_class.csv").write_text(_csv(
        ["label", "name", "precision", "recall", "f1", "support", "ap", "auc"],
        [[c["label"], c["name"], _f(c["precision"]), _f(c["recall"]), _f(c["f1"]), c["support"], _f(c["ap"]),
          _f(c["auc"])] for c in s["classes"]]), encoding="utf-8")
    conf = m["confusion"]
    (tmp / "confusion.csv").write_text(_csv(["true \\ predicted", *names],
                                            [[names[i], *map(int, conf[i])] for i in range(len(names))]),
                                       encoding="utf-8")
    curve_rows = []
    for i, n in enumerate(names):
        for kind, (x, y) in (("pr", m["pr"][i]), ("roc", m["roc"][i])):
            curve_rows += [[i, n, kind, _f(a), _f(b)] for a, b in zip(x, y)]
    (tmp / "curves.csv").write_text(_csv(["label", "name", "curve", "x", "y"], curve_rows), encoding="utf-8")
    np.savez_compressed(tmp / EVAL_SCORES, scores=ev.scores.scores.astype(np.float32), probs=probs.astype(np.float32),
                        labels=labels.astype(np.int32))
    what = f"{ev.run_dir.name} @ iteration {ev.iteration}, {ev.images} images"
    figs = {"confusion": confusion_figure(conf, names, f"confusion: {what}"),
            "pr": curves_figure(m["pr"], names, [_nan0(a) for a in m["ap"]], "pr", f"precision-recall: {what}"),
            "roc": curves_figure(m["roc"], names, [_nan0(a) for a in m["auc"]], "roc", f"ROC: {what}")}
    for key, png in figs.items():
        (tmp / f"{key}.png").write_bytes(png)
    gallery = _gallery(ev, tmp / "thumbs", mistakes)
    (tmp / "index.html").write_text(_html(ev, s, gallery), encoding="utf-8")
    replace_dir(tmp, out_dir)
    return out_dir


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


def _gallery(ev: Evaluation, thumbs: Path, most: int) -> list[dict]:
    """The ``most`` mistakes the net was surest of (highest probability of the wrong class), with thumbnails."""
    from PIL import Image

    m, labels = ev.measures, ev.scores.labels
    probs, pred = m["probs"], m["pred"]
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:most]
    out = []
    if ev.paths:
        thumbs.mkdir()
    for rank, i in enumerate(order):
        item = {"index": int(i), "true": ev.names[labels[i]], "predicted": ev.names[pred[i]],
                "p": float(probs[i, pred[i]]), "p_true": float(probs[i, labels[i]]),
                "path": ev.paths[i] if ev.paths else None, "thumb": None}
        if ev.paths:
            try:
                with Image.open(ev.paths[i]) as im:
                    im = im.convert("RGB")
                    im.thumbnail((128, 128))
                    name = f"{rank:03d}.jpg"
                    im.save(thumbs / name, quality=85)
                    item["thumb"] = f"thumbs/{name}"
            except OSError:
                pass
        out.append(item)
    return out


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td.l,th.l{text-align:left}"
        ".gal{display:flex;flex-wrap:wrap;gap:10px}.card{width:150px;font-size:12px;border:1px solid #ddd;padding:4px}"
        ".card img{max-width:140px;max-height:140px;display:block;margin:auto}.bad{color:#b00}img.fig{max-width:100%}")


def _html(ev: Evaluation, s: dict, gallery: list[dict]) -> str:
    e = html.escape
    head = f"Evaluation of {ev.run_dir.name} at iteration {ev.iteration}"
    top5 = f", top-5 <b>{s['top5']:.4f}</b>" if s["top5"] is not None else ""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(head)}</title><style>{_CSS}</style></head>"
           f"<body><h1>{e(head)}</h1><p>top-1 <b>{s['top1']:.4f}</b>{top5} on {s['images']} images of "
           f"{e(s['list'] or 'the net TEST source')} ({e(s['device'])}; weights {e(Path(s['weights']).name)})</p>"]
    ct = s.get("caffe_test")
    if ct:
        same = "the same" if ct["same_images"] else f"{ct['images']}"
        out.append(f"<p>Caffe's own test pass at iteration {ct['iteration']} ({e(str(ct['metric']))}): "
                   f"{ct['top1']:.4f} on {same} images.</p>")
    if s["mean_ap"] is not None:
        out.append(f"<p>mean AP {s['mean_ap']:.4f}, mean ROC AUC {s['mean_auc']:.4f} (one-vs-rest, per class)</p>")
    out.append("<h2>Confusion matrix</h2><img class='fig' alt='confusion matrix' src='confusion.png'>"
               "<p>Rows: the true class (each sums to its support); columns: the predicted class. "
               "<a href='confusion.csv'>confusion.csv</a></p>")
    out.append("<h2>Per class</h2><table><tr><th>label</th><th class='l'>class</th><th>precision</th><th>recall</th>"
               "<th>F1</th><th>support</th><th>AP</th><th>ROC AUC</th></tr>")
    for c in sorted(s["classes"], key=lambda c: (c["f1"] is None, c["f1"] or 0)):
        out.append("<tr>" + f"<td>{c['label']}</td><td class='l'>{e(c['name'])}</td>" + "".join(
            f"<td>{_f(c[k])}</td>" for k in ("precision", "recall", "f1")) + f"<td>{c['support']}</td>"
            + "".join(f"<td>{_f(c[k])}</td>" for k in ("ap", "auc")) + "</tr>")
    out.append("</table><p>Worst F1 first. <a href='per_class.csv'>per_class.csv</a>, "
               "<a href='predictions.csv'>predictions.csv</a></p>")
    out.append("<h2>Precision-recall and ROC, one class against the rest</h2>"
               "<img class='fig' alt='PR curves' src='pr.png'><img class='fig' alt='ROC curves' src='roc.png'>"
               "<p><a href='curves.csv'>curves.csv</a></p>")
    out.append(f"<h2>The {len(gallery)} most confident mistakes</h2><div class='gal'>")
    for g in gallery:
        img = f"<img alt='image {g['index']}' src='{e(g['thumb'])}'>" if g["thumb"] else ""
        title = e(g["path"] or f"image {g['index']}")
        out.append(f"<div class='card' title='{title}'>{img}<div>#{g['index']}: true <b>{e(g['true'])}</b></div>"
                   f"<div class='bad'>predicted <b>{e(g['predicted'])}</b> ({g['p']:.2f})</div>"
                   f"<div>p(true) {g['p_true']:.2f}</div></div>")
    out.append("</div></body></html>\n")
    return "".join(out)


def summary(ev: Evaluation) -> dict[str, Any]:
    """``eval/summary.json``: what was evaluated, the headline numbers and each class's."""
    m = ev.measures
    per = m["per_class"]

    def num(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    return {
        "run": ev.run_dir.name, "iteration": ev.iteration, "weights": str(ev.weights),
        "list": str(ev.list_file) if ev.list_file else None, "images": ev.images, "device": ev.scores.device,
        "top1": num(m["top1"]), "top5": num(m["top5"]), "caffe_test": ev.caffe_test,
        "mean_ap": num(float(np.nanmean(m["ap"]))) if not all(map(math.isnan, m["ap"])) else None,
        "mean_auc": num(float(np.nanmean(m["auc"]))) if not all(map(math.isnan, m["auc"])) else None,
        "classes": [{"label": i, "name": n, "precision": num(per["precision"][i]), "recall": num(per["recall"][i]),
                     "f1": num(per["f1"][i]), "support": int(per["support"][i]), "ap": num(m["ap"][i]),
                     "auc": num(m["auc"][i])} for i, n in enumerate(ev.names)],
    }
