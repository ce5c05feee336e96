"""Results files that mix generated tables with hand-written text: a script rewrites only its marked sections.

A generated section sits between two marker lines (invisible in rendered Markdown)::

    <!-- generated: begin -->
    ... what the script wrote ...
    <!-- generated: end -->

or, for a file with several, ``<!-- generated: NAME begin -->`` / ``<!-- generated: NAME end -->``. Everything
outside the markers (a title, the commands that were run, the reading of the numbers) is kept. A file that does
not exist yet is written as ``head`` + the sections + ``tail``; an existing file without the markers of a section
is refused rather than overwritten, since its text may be hand-written.
"""

from __future__ import annotations

from pathlib import Path


def markers(name: str = "") -> tuple[str, str]:
    """The begin and end marker lines of the section ``name`` ("" for a file's only section)."""
    tag = f"generated: {name} " if name else "generated: "
    return f"<!-- {tag}begin -->", f"<!-- {tag}end -->"


def section(body: str, name: str = "") -> str:
    """``body`` between the markers of ``name``, one blank line inside each marker."""
    begin, end = markers(name)
    return f"{begin}\n\n{body.strip(chr(10))}\n\n{end}"


def replace_section(text: str, body: str, name: str = "") -> str:
    """``text`` with the section ``name`` replaced by ``body``; ValueError when its markers are missing, repeated
    or out of order."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"no single '{begin}' … '{end}' section")
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + section(body, name) + text[stop:]


def _refusal(path: Path, name: str, err: Exception) -> SystemExit:
    begin, end = markers(name)
    return SystemExit(f"{path}: {err}. The rest of the file may be hand-written, so it is not overwritten: put the "
                      f"lines '{begin}' and '{end}' around the part this script generates, or write to a new file.")


def check_sections(path: Path, names: tuple[str, ...] = ("",)) -> None:
    """SystemExit when ``path`` exists without the markers of one of the sections ``names``: call it before a long
    measurement whose results `write_sections` will write there."""
    path = Path(path)
    if path.exists():
        text = path.read_text()
        for name in names:
            try:
                replace_section(text, "", name)
            except ValueError as err:
                raise _refusal(path, name, err) from None


def write_sections(path: Path, bodies: dict[str, str], head: str = "", tail: str = "") -> str:
    """Write each ``{name: body}`` into its marked section of ``path`` and keep the rest of the file; a new file
    is ``head`` + the sections (in the given order, a blank line apart) + ``tail``. Returns the text written.

    Raises SystemExit, writing nothing, when ``path`` exists but lacks the markers of one of the sections."""
    path = Path(path)
    if path.exists():
        text = path.read_text()
        for name, body in bodies.items():
            try:
                text = replace_section(text, body, name)
            except ValueError as err:
                raise _refusal(path, name, err) from None
    else:
        text = head + "\n\n".join(section(b, n) for n, b in bodies.items()) + "\n" + tail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def write_section(path: Path, body: str, name: str = "", head: str = "", tail: str = "") -> str:
    """`write_sections` for a file with one generated section."""
    return write_sections(path, {name: body}, head, tail)
