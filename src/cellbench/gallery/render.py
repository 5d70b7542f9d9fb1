"""Model cards as Markdown and HTML, and the gallery's ``index.html``: static files, readable from ``file://``.

Every score is printed on a row that also names its dataset, split, task,
ground truth, boundary rule, image count and aggregation; the IoU threshold
is in the column name and the matching rule right above the table. The index
page groups models as SegGal does and reorders the rows of each group with a
few lines of inline JavaScript (no server, no external script).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from cellbench.gallery.card import COCO_METRICS, HEADLINE
from cellbench.gallery.index import group_of, ordered

__all__ = ["card_html", "card_markdown", "index_html", "score_rows"]

_SETTING_COLUMNS = ("dataset", "split", "task", "held out", "ground truth", "boundary rule", "images", "aggregation")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _setting_cells(score: Mapping, aggregation: str) -> list[str]:
    gt = "overlapping" if score["ground_truth"] == "overlap" else f"flattened ({score.get('flatten_policy')})"
    boundary = f"{score['boundary_px']} px frame dropped" if score["boundary_px"] else "off"
    return [str(score["dataset"]), str(score["split"]), str(score["task"]), "yes" if score.get("held_out") else "NO",
            gt, boundary, str(score["n_images"]), aggregation]


def score_rows(card: Mapping) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(header, rows) of the accuracy table and of the COCO table; each row holds the score's settings."""
    header = [*_SETTING_COLUMNS, *(name for name, _, _ in HEADLINE)]
    rows = []
    for score in card["scores"]:
        for scope in ("pooled", "image_mean"):
            values = score[scope]
            rows.append(_setting_cells(score, "pooled over images" if scope == "pooled" else "mean over images")
                        + [_fmt(values.get(name)) for name, _, _ in HEADLINE])
    coco_header = [*_SETTING_COLUMNS, *(f"COCO {m}" for m in COCO_METRICS)]
    coco_rows = [_setting_cells(s, "COCO (max 3000 detections)") + [_fmt(s["coco"].get(m)) for m in COCO_METRICS]
                 for s in card["scores"] if s.get("coco")]
    return header, rows, coco_header, coco_rows


def _sections(card: Mapping) -> list[tuple[str, list[tuple[str, object]]]]:
    """The card as (title, [(kind, content)]) with kinds 'text', 'pairs', 'table', 'code'."""
    data, training = card["training_data"], card["training"]
    method = card["method"]
    archive = card.get("archive") or {}
    header, rows, coco_header, coco_rows = score_rows(card)
    scores: list[tuple[str, object]] = []
    if rows:
        matching = {s["matching"] for s in card["scores"]}
        thresholds = sorted({t for s in card["scores"] for t in s["thresholds"]})
        sources = {f"run {s['source']['run_name']} ({s['source']['run']}), grid entry {s['source']['entry']}"
                   for s in card["scores"]}
        scores += [("text", f"Matching: {'; '.join(sorted(matching))}. IoU thresholds scored: "
                            f"{', '.join(str(t) for t in thresholds)}. ap_dsb is TP / (TP + FP + FN) (DSB / Cellpose "
                            f"'AP'), not COCO AP. From {'; '.join(sorted(sources))}."),
                   ("table", (header, rows))]
        if coco_rows:
            scores.append(("table", (coco_header, coco_rows)))
        for s in card["scores"]:
            if not s.get("coco") and s.get("coco_note"):
                scores.append(("text", f"COCO metrics of {s['dataset']} / {s['split']}: {s['coco_note']}."))
                break
    else:
        scores.append(("text", "No held-out scores: the model was published without a run (--run) that scored it."))
    ts = training.get("ts_s")
    machine = training.get("machine")
    return [
        ("Model", [("pairs", [
            ("method", f"{method['name']} (version {method['version']})"),
            ("description", card.get("description") or method.get("description") or ""),
            ("authors", ", ".join(card.get("authors") or ()) or "not given"),
            ("licence", card.get("licence") or "not given"),
            ("citation", card.get("citation") or "not given"),
            ("cellbench", f"trained with {card['cellbench_version']['trained_with']}, published with "
                          f"{card['cellbench_version']['published_with']}"),
            ("archive", f"{archive.get('file', '')} sha256 {archive.get('sha256', '')} "
                        f"({archive.get('size', '')} bytes)"),
        ])]),
        ("Training data", [("pairs", [
            ("dataset", f"{data.get('dataset')} (layout {data.get('layout')})"),
            ("split", str(data.get("split"))),
            ("task", f"{data.get('task')} (classes: {', '.join(data.get('classes') or ()) or 'n/a'})"),
            ("images", _fmt(data.get("images"))),
            ("cells", f"{_fmt(data.get('cells'))} "
                      f"({', '.join(f'{k}: {v}' for k, v in (data.get('cells_per_class') or {}).items())})"),
            ("image sizes", ", ".join("x".join(map(str, s)) for s in data.get("image_sizes") or ()) or "n/a"),
            ("modality", data.get("modality") or "unspecified"),
            ("nuclei / whole cell", data.get("target") or "unspecified"),
            ("channels", data.get("channels") or "unspecified"),
            ("validation split", str(data.get("valid_split"))),
        ])]),
        ("Training time", [("pairs", [
            ("T (training wall time)", f"{_fmt(training.get('t_s'), 1)} s"),
            ("Ts (standardised, 18-methods paper)",
             f"{_fmt(ts, 1)} s; {training.get('formula')}; B = {training.get('batch_size')}, "
             f"E = {training.get('epochs')}, I = {training.get('iterations')}, N = {training.get('n_images')}"),
            ("machine", ", ".join(f"{k} {v}" for k, v in machine.items()) if machine else "not recorded"),
            ("final training loss", _fmt(training.get("final_loss"), 4)),
            ("validation", f"{training.get('val_metric')} {_fmt(training.get('val_score'))}"
                           if training.get("val_metric") else "none"),
        ])]),
        ("Held-out scores", scores),
        ("Use it", [("code", f"cellbench gallery pull {card['name']} --gallery GALLERY\n"
                             f"cellbench predict gallery:{card['name']} --gallery GALLERY --images IMAGES --out OUT")]),
        ("Full config", [("code", json.dumps({"config": card["config"], "tiling": card.get("tiling"),
                                              "flatten": card.get("flatten"), "seed": card.get("seed")}, indent=2))]),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def card_markdown(card: Mapping) -> str:
    """The card as Markdown."""
    out = [f"# {card['name']}", ""]
    for title, parts in _sections(card):
        out += [f"## {title}", ""]
        for kind, content in parts:
            if kind == "text":
                out += [str(content), ""]
            elif kind == "pairs":
                out += [f"- **{k}**: {_md_cell(str(v))}" for k, v in content] + [""]
            elif kind == "table":
                header, rows = content
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows] + [""]
            else:
                out += ["```", str(content), "```", ""]
    return "\n".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#f0f0f0}tr.group th{background:#dde}
code,pre{background:#f6f6f6}pre{padding:.5em;overflow:auto}button{margin-right:.5em}"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def card_html(card: Mapping) -> str:
    """The card as one self-contained HTML page."""
    name = html.escape(card["name"])
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title><style>{_STYLE}</style></head>"
           f"<body><p><a href='../../../index.html'>gallery</a></p><h1>{name}</h1>"]
    for title, parts in _sections(card):
        out.append(f"<h2>{html.escape(title)}</h2>")
        for kind, content in parts:
            if kind == "text":
                out.append(f"<p>{html.escape(str(content))}</p>")
            elif kind == "pairs":
                out.append("<dl>" + "".join(f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(str(v))}</dd>"
                                            for k, v in content) + "</dl>")
            elif kind == "table":
                out.append(_html_table(*content))
            else:
                out.append(f"<pre>{html.escape(str(content))}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


_SORT_JS = """
function sortRows(key){
  document.querySelectorAll('tbody.group').forEach(function(tb){
    var rows=Array.prototype.slice.call(tb.querySelectorAll('tr.model'));
    rows.sort(function(a,b){
      if(key==='seggal'){return a.dataset.seggal-b.dataset.seggal;}
      var x=a.dataset[key],y=b.dataset[key];
      if(x===''&&y===''){return a.dataset.seggal-b.dataset.seggal;}
      if(x===''){return 1;} if(y===''){return -1;}
      var d=key==='speed'?(+x)-(+y):(+y)-(+x);
      return d!==0?d:a.dataset.seggal-b.dataset.seggal;
    });
    rows.forEach(function(r){tb.appendChild(r);});
  });
  document.getElementById('sorted').textContent=key;
}
"""


def _num(value) -> str:
    return "" if value is None else repr(float(value))


def index_html(entries: Sequence[Mapping], *, title: str = "cellbench model gallery") -> str:
    """The gallery page: models grouped as SegGal (modality, nuclei / whole cell, channels), then by training
    data and method; buttons reorder each group by accuracy, speed (Ts) or overall."""
    header = ["model", "method", "training data", "accuracy F1@0.5 (scored on)", "Ts (s)", "overall", "licence",
              "archive (sha256)"]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style><script>{_SORT_JS}</script></head><body><h1>{html.escape(title)}</h1>",
           "<p>Sort each group by: "
           + "".join(f"<button onclick=\"sortRows('{k}')\">{k}</button>" for k in ("seggal", "accuracy", "speed",
                                                                                     "overall"))
           + " (now: <span id='sorted'>seggal</span>). Accuracy is F1 at IoU 0.5 on the held-out data named beside "
             "it; Ts is the training time standardised as in the 18-methods paper (50 epochs at batch size 8, "
             "seconds on the machine that trained); overall = mean of accuracy and scalability 1 - Phi(z(Ts)) "
             "within the group.</p>",
           "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"]
    rank = 0
    current = None
    for e in ordered(entries, "seggal"):
        if group_of(e) != current:
            if current is not None:
                out.append("</tbody>")
            current = group_of(e)
            modality, target, channels = current
            out.append(f"<tbody class='group'><tr class='group'><th colspan='{len(header)}'>{html.escape(modality)}"
                       f" / {html.escape(target)} / channels: {html.escape(channels)}</th></tr>")
        acc = e.get("accuracy")
        scored = (f"{acc['value']:.3f} on {acc['dataset']} / {acc['split']} ({acc['task']}, {acc['n_images']} images, "
                  f"{acc['ground_truth']} ground truth, boundary {acc['boundary_px']} px, {acc['aggregation']})"
                  if acc else "no held-out score")
        data = (f"{e['dataset']} / {e.get('train_split')} / {e['task']}: {e.get('train_images')} images, "
                f"{e.get('train_cells')} cells")
        archive = e["archive"]
        cells = [
            f"<a href='{html.escape(e['card']['html'])}'>{html.escape(e['name'])}</a>",
            html.escape(f"{e['method']} v{e['method_version']}"),
            html.escape(data),
            html.escape(scored),
            html.escape(_fmt(e.get("ts_s"), 1)),
            html.escape(_fmt(e.get("overall"))),
            html.escape(e.get("licence") or "not given"),
            f"<a href='{html.escape(archive['path'])}' title='{html.escape(archive['sha256'])}'>"
            f"{html.escape(archive['sha256'][:12])}</a> ({archive['size']} bytes)",
        ]
        out.append(f"<tr class='model' data-seggal='{rank}' data-accuracy='{_num(acc['value'] if acc else None)}' "
                   f"data-speed='{_num(e.get('ts_s'))}' data-overall='{_num(e.get('overall'))}'>"
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        rank += 1
    if current is not None:
        out.append("</tbody>")
    out.append("</table></body></html>")
    return "\n".join(out)
