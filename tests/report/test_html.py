"""The HTML page: self-contained (figures inlined), escaped, one anchor per section, tables with captions."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from cellbench.report.html import Section, render_html
from cellbench.report.tables import Table

# The smallest valid PNG: 1 x 1 pixel.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABXvMqGgAAAABJRU5ErkJggg=="
)


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _page(tmp_path) -> tuple[str, Table]:
    (tmp_path / "fig.png").write_bytes(PNG)
    table = Table("summary_x", "Summary <b>", ("Model", "F1"), (("cellpose & co", 0.123456), ("none", None)),
                  "per image, IoU >= 0.5", decimals=3)
    sections = [
        Section("Results <1>", text="a < b", tables=(table,), figures=(("F1 'by' threshold", tmp_path / "fig.png"),)),
        Section("Environment", pre="python <3.11>\n"),
    ]
    return render_html("Run <x> & y", "intro <i>", sections), table


def test_page_is_self_contained(tmp_path):
    page, _ = _page(tmp_path)
    tags = _parse(page).tags
    # Nothing is fetched: no scripts, no stylesheet links, every image inline.
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    images = [a for t, a in tags if t == "img"]
    assert len(images) == 1 and images[0]["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(images[0]["src"].split(",", 1)[1]) == PNG
    assert images[0]["alt"] == "F1 'by' threshold"
    hrefs = [a["href"] for t, a in tags if t == "a"]
    assert hrefs == ["#s0", "#s1"] and [a.get("id") for t, a in tags if t == "h2"] == ["s0", "s1"]
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//|file:)", page)
    assert "url(" not in page and "@import" not in page


def test_text_is_escaped(tmp_path):
    page, _ = _page(tmp_path)
    assert "<x>" not in page and "<1>" not in page and "<i>" not in page and "<b>" not in page
    assert "Run &lt;x&gt; &amp; y" in page
    text = "".join(_parse(page).text)
    for shown in ("Run <x> & y", "intro <i>", "Results <1>", "a < b", "Summary <b>", "cellpose & co",
                  "python <3.11>"):
        assert shown in text


def test_tables_show_formatted_values_caption_and_csv_name(tmp_path):
    page, table = _page(tmp_path)
    assert page.count("<table>") == 1
    assert table.formatted() == [["cellpose & co", "0.123"], ["none", "n/a"]]
    assert re.findall(r"<td>(.*?)</td>", page) == ["cellpose &amp; co", "0.123", "none", "n/a"]
    assert re.findall(r"<th>(.*?)</th>", page) == ["Model", "F1"]
    assert "<p class='caption'>per image, IoU &gt;= 0.5 (CSV: tables/summary_x.csv)</p>" in page


def test_sections_in_order_and_nothing_after_the_body(tmp_path):
    page, _ = _page(tmp_path)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</body></html>")
    assert page.index("Results &lt;1&gt;</h2>") < page.index("Environment</h2>")
    assert "<meta charset='utf-8'>" in page
    empty = render_html("t", "", [])
    assert "<h2" not in empty and "<ul></ul>" in empty
