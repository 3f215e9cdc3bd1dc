"""Sphinx directives that render the engine's own tables, so the documentation cannot drift.

Everything here reads ``smtp_proto`` at build time:

- ``limits-table`` renders the fields of :class:`smtp_proto.Limits` or
  :class:`smtp_proto.Timeouts`: name, default, its ``#:`` comment with the RFC sections it
  cites made links, and (for timeouts) the commands whose replies it times, from
  ``TIMEOUT_FIELD``.
- ``send-transitions-table`` and ``reply-transitions-table`` render
  ``smtp_proto._state.SEND_TRANSITIONS`` and ``REPLY_TRANSITIONS``.
- ``state-diagram`` draws both tables with Graphviz when the ``dot`` program is installed,
  and renders nothing otherwise: the tables say the same thing and need no external
  program, so the build never depends on one.
- ``optional-automodule`` documents a module with ``automodule`` once it exists, and says it
  is not there yet until then (the transports are written separately from the docs).

It also fixes two things autodoc gets wrong for a package that re-exports everything from
private modules: see :func:`restore_defining_modules` and :func:`_document_public_data`.

The generated text is reStructuredText parsed in place, so roles such as ``:rfc:`` and
``:class:`` work in it as anywhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import re
import shutil
from collections.abc import Iterable, Iterator

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

import smtp_proto
from smtp_proto import _state

# "RFC 5321 section 4.5.3.1.5", "RFC 2920", or a bare "Section 4.5.3.2.1" that continues the
# RFC named before it (or the class's own RFC).
_CITATION = re.compile(
    r"RFC (?P<rfc>\d{3,4})(?: section (?P<section>\d+(?:\.\d+)*))?"
    r"|[Ss]ection (?P<bare>\d+(?:\.\d+)*)"
)

# The RFC a class's comments cite when they say only "Section x.y" (Timeouts: its docstring
# says RFC 5321 section 4.5.3.2).
_DEFAULT_RFC = {"Limits": "5321", "Timeouts": "5321"}

# Sample replies of each class, to ask each event builder which event it makes.
_SAMPLE_REPLIES = {
    _state.ReplyClass.POSITIVE: smtp_proto.Reply(code=250, lines=("mx.example.org",)),
    _state.ReplyClass.INTERMEDIATE: smtp_proto.Reply(code=354, lines=("go ahead",)),
    _state.ReplyClass.NEGATIVE: smtp_proto.Reply(code=550, lines=("refused",)),
}

_REPLY_CLASS_TEXT = {
    _state.ReplyClass.POSITIVE: "2xx",
    _state.ReplyClass.INTERMEDIATE: "3xx",
    _state.ReplyClass.NEGATIVE: "4xx, 5xx",
}


def _private_modules() -> list[str]:
    """The engine's own modules, ``smtp_proto._x``."""
    return sorted(
        f"smtp_proto.{info.name}"
        for info in pkgutil.iter_modules(smtp_proto.__path__)
        if info.name.startswith("_")
    )


def restore_defining_modules() -> None:
    """Set ``__module__`` of every public class back to the private module defining it.

    ``smtp_proto/__init__.py`` sets it to ``"smtp_proto"`` so that users see the public
    name; autodoc reads ``#:`` comments from the module ``__module__`` names, and would find
    none there. Called from conf.py, so it affects the documentation build only.
    """
    defined_in: dict[str, str] = {}
    for module in _private_modules():
        for name, (kind, _, _) in ModuleAnalyzer.for_module(module).find_tags().items():
            if kind == "class" and "." not in name:
                defined_in.setdefault(name, module)
    for name in smtp_proto.__all__:
        value = getattr(smtp_proto, name)
        if isinstance(value, type) and value.__module__ == "smtp_proto" and name in defined_in:
            value.__module__ = defined_in[name]


@functools.cache
def _module_level_comments() -> dict[str, list[str]]:
    """The ``#:`` comments of module-level names in the engine's private modules."""
    found: dict[str, list[str]] = {}
    for module in _private_modules():
        for (owner, name), lines in ModuleAnalyzer.for_module(module).find_attr_docs().items():
            if owner == "":
                found.setdefault(name, list(lines))
    return found


def _document_public_data(  # noqa: PLR0917 - the signature Sphinx calls it with
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Give ``smtp_proto.X`` data the ``#:`` comment written where X is defined, or nothing.

    autodoc looks for the comment in ``smtp_proto/__init__.py``, which only re-exports X, and
    would otherwise show the docstring of X's type (``int([x]) -> integer`` ...). Data
    without a comment is described by the directive's own content instead.
    """
    module, _, attribute = name.rpartition(".")
    if what == "data" and module == "smtp_proto":
        lines[:] = _module_level_comments().get(attribute, [])


def _attribute_comments(module: str, class_name: str) -> dict[str, str]:
    """The ``#:`` comments of a class's attributes, each joined into one line."""
    found = ModuleAnalyzer.for_module(module).find_attr_docs()
    return {
        attribute: " ".join(line.strip() for line in lines if line.strip())
        for (owner, attribute), lines in found.items()
        if owner == class_name
    }


def _with_rfc_links(text: str, default_rfc: str) -> str:
    """*text* (reStructuredText) with each RFC citation turned into an ``:rfc:`` link."""
    last_rfc = default_rfc

    def link(match: re.Match[str]) -> str:
        nonlocal last_rfc
        if match["rfc"]:
            last_rfc = match["rfc"]
            section = match["section"]
        else:
            section = match["bare"]
        anchor = f"#section-{section}" if section else ""
        return f":rfc:`{match[0]} <{last_rfc}{anchor}>`"

    return _CITATION.sub(link, text)


def _octets(value: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f"{value:,} ({value // size} {unit})"
    return f"{value:,}"


def _seconds(value: float) -> str:
    return f"{value:g} s ({value / 60:g} min)" if value >= 60 else f"{value:g} s"


def _list_table(header: Iterable[str], rows: Iterable[Iterable[str]], widths: str) -> Iterator[str]:
    """The lines of a ``list-table`` whose cells are reStructuredText."""
    yield ".. list-table::"
    yield "   :header-rows: 1"
    yield f"   :widths: {widths}"
    yield ""
    for row in (list(header), *(list(r) for r in rows)):
        for index, cell in enumerate(row):
            bullet = "*" if index == 0 else " "
            cell_lines = cell.splitlines() or [""]
            yield f"   {bullet} - {cell_lines[0]}"
            for line in cell_lines[1:]:
                yield f"       {line}" if line else ""
    yield ""


class _GeneratedDirective(SphinxDirective):
    """A directive whose output is generated reStructuredText."""

    def render(self, lines: Iterable[str]) -> list[nodes.Node]:
        source = self.get_source_info()[0] or "<generated>"
        content = StringList()
        for number, line in enumerate(lines):
            content.append(line, source, number)
        container = nodes.container()
        self.state.nested_parse(content, self.content_offset, container)
        return list(container.children)


class LimitsTable(_GeneratedDirective):
    """``.. limits-table:: Limits`` (or ``Timeouts``): one row per dataclass field."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        class_name = self.arguments[0]
        cls = getattr(smtp_proto, class_name)
        # The ``#:`` comments live in the module that defines the class.
        comments = _attribute_comments("smtp_proto._limits", class_name)
        is_timeouts = cls is smtp_proto.Timeouts
        awaited = _awaited_replies()
        rows = []
        for field in dataclasses.fields(cls):
            comment = comments.get(field.name)
            if not comment:
                # Every limit documents its reason; a field without one is a bug to report
                # here rather than a blank cell.
                raise self.error(f"{class_name}.{field.name} has no #: comment")
            row = [f":attr:`~smtp_proto.{class_name}.{field.name}`"]
            if is_timeouts:
                row.append(_seconds(float(field.default)))
                row.append(", ".join(awaited.get(field.name, [])) or "(none)")
            else:
                row.append(_octets(int(field.default)))
            row.append(_with_rfc_links(comment, _DEFAULT_RFC[class_name]))
            rows.append(row)
        if is_timeouts:
            header = ["Field", "Default", "Times the reply to", "Source"]
            widths = "18 12 25 45"
        else:
            header = ["Field", "Default", "Source and reason"]
            widths = "22 14 64"
        return self.render(_list_table(header, rows, widths))


def _awaited_replies() -> dict[str, list[str]]:
    """For each Timeouts field, the commands whose replies it times."""
    by_field: dict[str, list[str]] = {}
    for command, field in _state.TIMEOUT_FIELD.items():
        by_field.setdefault(field, []).append(f"``{command.name}``")
    return by_field


class SendTransitionsTable(_GeneratedDirective):
    """``.. send-transitions-table::``: what may be sent in each state, and where it leads."""

    def run(self) -> list[nodes.Node]:
        meanings = _attribute_comments("smtp_proto._state", "State")
        rows = []
        for state in smtp_proto.State:
            by_target: dict[smtp_proto.State, list[str]] = {}
            for command, target in _state.SEND_TRANSITIONS[state].items():
                by_target.setdefault(target, []).append(f"``{command.name}``")
            allowed = "\n".join(
                f"- {', '.join(commands)} → ``{target.name}``"
                for target, commands in by_target.items()
            )
            rows.append([f"``{state.name}``", meanings.get(state.name, ""), allowed or "none"])
        header = ["State", "Meaning", "Commands that may be sent → state after sending"]
        return self.render(_list_table(header, rows, "20 40 40"))


class ReplyTransitionsTable(_GeneratedDirective):
    """``.. reply-transitions-table::``: the event each reply gives and the state it sets."""

    def run(self) -> list[nodes.Node]:
        rows = []
        for (command, kind), (build, changes) in _state.REPLY_TRANSITIONS.items():
            event = build("argument", _SAMPLE_REPLIES[kind])
            change = ", ".join(
                f"``{before.name}`` → ``{after.name}``" for before, after in changes.items()
            )
            rows.append(
                [
                    f"``{command.name}``",
                    _REPLY_CLASS_TEXT[kind],
                    f":class:`~smtp_proto.{type(event).__name__}`",
                    change or "(none)",
                ]
            )
        header = ["Reply to", "Reply class", "Event", "State change"]
        return self.render(_list_table(header, rows, "20 15 25 40"))


def state_diagram_dot() -> str:
    """The two tables as Graphviz dot source: commands solid, replies dashed.

    Edges between the same two states are merged into one with a joined label, and replies
    that leave the state as it is are left out. States no edge reaches (``ERROR``, entered
    from anywhere on a protocol error) are left out too; the page says so.
    """
    sends: dict[tuple[smtp_proto.State, smtp_proto.State], list[str]] = {}
    for state in smtp_proto.State:
        for command, target in _state.SEND_TRANSITIONS[state].items():
            sends.setdefault((state, target), []).append(command.name)
    replies: dict[tuple[smtp_proto.State, smtp_proto.State], list[str]] = {}
    for (command, kind), (_, changes) in _state.REPLY_TRANSITIONS.items():
        for before, after in changes.items():
            if before is not after:
                label = f"{_REPLY_CLASS_TEXT[kind]} to {command.name}"
                replies.setdefault((before, after), []).append(label)
    lines = [
        "digraph states {",
        '  rankdir=LR; node [shape=box, style=rounded, fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize=9];',
    ]
    for (before, after), labels in sends.items():
        lines.append(f'  {before.name} -> {after.name} [label="{", ".join(labels)}"];')
    for (before, after), labels in replies.items():
        label = "\\n".join(labels)
        lines.append(f'  {before.name} -> {after.name} [style=dashed, label="{label}"];')
    lines.append("}")
    return "\n".join(lines)


class StateDiagram(_GeneratedDirective):
    """``.. state-diagram::``: a Graphviz drawing of the tables, when ``dot`` is installed."""

    def run(self) -> list[nodes.Node]:
        if not self.config.smtp_proto_draw_states:
            return []
        body = ["   " + line for line in state_diagram_dot().splitlines()]
        caption = (
            "   :caption: Solid: commands the client sends; dashed: replies that change the"
            " state. Generated from the two tables below."
        )
        return self.render([".. graphviz::", caption, "", *body, ""])


class OptionalAutomodule(_GeneratedDirective):
    """``.. optional-automodule:: name``: ``automodule`` if the module exists, a note if not.

    Options are passed on to ``automodule``. Only the module itself (or a parent package)
    being absent counts as "not there yet"; any other import error is left for autodoc to
    report, so that a broken module fails the build rather than vanishing from the docs.
    """

    required_arguments = 1
    option_spec = {  # noqa: RUF012 - docutils reads a plain class attribute
        "members": directives.unchanged,
        "undoc-members": directives.flag,
        "show-inheritance": directives.flag,
        "member-order": directives.unchanged,
        "ignore-module-all": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if name == missing or name.startswith(missing + "."):
                return self.render(
                    [
                        ".. note::",
                        "",
                        f"   ``{name}`` is not part of this build yet. Its reference is",
                        "   generated from the module's docstrings and appears here once the",
                        "   module exists.",
                        "",
                    ]
                )
        options = [
            f"   :{option}: {value}" if value else f"   :{option}:"
            for option, value in self.options.items()
        ]
        return self.render([f".. automodule:: {name}", *options, ""])


def setup(app: Sphinx) -> dict[str, object]:
    app.add_config_value(
        "smtp_proto_draw_states", shutil.which("dot") is not None, "env", types=[bool]
    )
    app.connect("autodoc-process-docstring", _document_public_data)
    app.add_directive("limits-table", LimitsTable)
    app.add_directive("send-transitions-table", SendTransitionsTable)
    app.add_directive("reply-transitions-table", ReplyTransitionsTable)
    app.add_directive("state-diagram", StateDiagram)
    app.add_directive("optional-automodule", OptionalAutomodule)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
