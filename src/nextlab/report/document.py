"""The report as a list of blocks, rendered to Markdown and to one self-contained HTML file.

Blocks are tuples: ("h1"|"h2"|"h3"|"p", text), ("list", [text, ...]),
("table", header, rows), ("figure", number, png_path, relative_src, title, caption).
Text uses two inline marks only, `code` and **bold**, so both renderings come from one source.
The HTML inlines every image as base64, so the file can be mailed or opened offline.

    >>> print(to_markdown([("h2", "A"), ("p", "uses `x` and **y**")]))
    ## A
    <BLANKLINE>
    uses `x` and **y**
    <BLANKLINE>
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

Block = tuple

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 860px;
       margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; font-size: 90%; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f7f7f7; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 90%; color: #444; }
"""


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            _, number, _, src, title, caption = block
            out.append(f"![Figure {number}: {title}]({src})\n\n*Figure {number}. {title}.* {caption}")
        else:
            raise ValueError(f"unknown block {kind!r}")
        out.append("")
    return "\n".join(out)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline_html(text: str) -> str:
    """Escape, then turn `code` and **bold** into tags.

    >>> inline_html("a < b, `x<y>` **ok**")
    'a &lt; b, <code>x&lt;y&gt;</code> <strong>ok</strong>'
    """
    text = html.escape(str(text), quote=False)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            anchor = re.sub(r"[^a-z0-9]+", "-", block[1].lower()).strip("-")
            body.append(f'<{kind} id="{anchor}">{inline_html(block[1])}</{kind}>')
        elif kind == "p":
            body.append(f"<p>{inline_html(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{inline_html(item)}</li>" for item in block[1])
            body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            header, rows = block[1], block[2]
            head = "".join(f"<th>{inline_html(h)}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "figure":
            _, number, png, src, fig_title, caption = block
            data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            body.append(
                f'<figure id="{html.escape(Path(src).stem)}"><img alt="Figure {number}: {html.escape(fig_title)}" '
                f'src="data:image/png;base64,{data}"><figcaption><strong>Figure {number}. '
                f"{inline_html(fig_title)}.</strong> {inline_html(caption)}</figcaption></figure>"
            )
        else:
            raise ValueError(f"unknown block {kind!r}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
