#!/usr/bin/python3
"""Fail when docs/protocol.md and the code disagree about the wire contract.

  check-protocol-doc.py [SOURCE_DIR]

Compares, in both directions (see docs/protocol.md, "How this document is
checked"): the helper methods of the SDK's table, the CLI methods and their
params with types of the broker's request table, hello's params and result
keys, the instance map's keys (sent by the broker, read by the SDK), the
helper notifications and their keys, the error codes, the feature names
and the limits. Prints one line per difference; exit 1 if there is one.
"""
import os
import re
import sys

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
problems = []


def read(path):
    with open(os.path.join(SRC, path), encoding="utf-8") as f:
        return f.read()


def compare(what, code, doc, code_where, doc_where="docs/protocol.md"):
    for k in sorted(set(code) - set(doc)):
        problems.append("%s: %s is in %s but not in %s" % (what, k, code_where, doc_where))
    for k in sorted(set(doc) - set(code)):
        problems.append("%s: %s is in %s but not in %s" % (what, k, doc_where, code_where))


def c_function(text, name):
    """The body of the C function name (from its definition to the closing brace)."""
    m = re.search(r"^[^\n;]*\b%s\([^;{]*\)\s*\{" % re.escape(name), text, re.M)
    if not m:
        raise SystemExit("check-protocol-doc: no function %s" % name)
    end = text.index("\n}", m.end())
    return text[m.end():end]


def c_block(text, start):
    """From the line matching start to the next line that is '};'."""
    i = text.index(start)
    return text[i:text.index("\n};", i)]


def packed_keys(body):
    """Keys a C body packs: proto_pack_kv_*(pk, "k", ...) and proto_pack_str(pk, "k")."""
    return set(re.findall(r'proto_pack_(?:kv_\w+|str)\(&?\w+, "(\w+)"', body))


# ---- the document ----
DOC = read("docs/protocol.md")


def doc_section(title, level):
    """The text under the heading `title` (at level #...), to the next heading
    of that level or above."""
    m = re.search(r"^%s %s\s*$" % ("#" * level, re.escape(title)), DOC, re.M)
    if not m:
        raise SystemExit("check-protocol-doc: docs/protocol.md has no heading %r" % title)
    nxt = re.compile(r"^#{1,%d} " % level, re.M).search(DOC, m.end())
    return DOC[m.end():nxt.start() if nxt else len(DOC)]


def subsections(text):
    """[(names in backquotes of a #### heading, its text)]."""
    out = []
    parts = re.split(r"^#### (.*)$", text, flags=re.M)
    for i in range(1, len(parts), 2):
        names = re.findall(r"`([^`]+)`", parts[i].split("(")[0])
        out.append((names, parts[i + 1]))
    return out


def table(text, first):
    """Rows (lists of cells) of the first table whose header starts with first."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("| %s |" % first):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells and set(cells[0]) <= set("-"):
                continue
            rows.append(cells)
    return rows if inside else None


def nested_keys(cell):
    """Keys named in the {key: type, key2, ...} notation of a table cell."""
    keys = set()
    for start in [i for i, c in enumerate(cell) if c == "{"]:
        depth, item = 0, ""
        for c in cell[start + 1:]:
            if c in "{[":
                depth += 1
            elif c in "}]":
                if depth == 0:
                    break
                depth -= 1
            if depth == 0 and c == ",":
                keys |= set(re.findall(r"^\s*(\w+)", item))
                item = ""
            elif depth == 0:
                item += c
        keys |= set(re.findall(r"^\s*(\w+)", item))
    return keys


# ---- helper methods ----
vmh = read("protocol/src/vmh.c")
sdk_methods = set(re.findall(r'VMH_METHOD\("([\w.]+)"', vmh)) | {"hello", "ping", "shutdown"}
helper_doc = doc_section("broker ↔ helper", 2)
doc_methods = set()
for title in ("Handshake and version negotiation", "Methods (broker → helper)"):
    for names, _ in subsections(doc_section(title, 3)):
        doc_methods |= {n for n in names if re.fullmatch(r"[a-z_.]+", n)}
compare("helper method", sdk_methods, doc_methods, "protocol/src/vmh.c (vmh_methods)")

# ---- hello ----
hello_text = [t for n, t in subsections(doc_section("Handshake and version negotiation", 3))
              if n == ["hello"]][0]
hello_params_code = set(re.findall(r'proto_(?:map_get|get_\w+)\(params, "(\w+)"',
                                   c_function(vmh, "vmh_hello")))
compare("hello param", hello_params_code, [r[0] for r in table(hello_text, "param")],
        "protocol/src/vmh.c (vmh_hello)")
hello_c = read("protocol/src/hello.c")
hello_result_code = packed_keys(c_function(hello_c, "proto_hello_pack")) | set(
    re.findall(r'proto_(?:map_get|get_\w+)\(result, "(\w+)"',
               c_function(hello_c, "proto_hello_parse")))
compare("hello result key", hello_result_code, [r[0] for r in table(hello_text, "result")],
        "protocol/src/hello.c")

# ---- the instance map ----
inst_rows = table(doc_section("The instance map", 3), "key")
doc_inst = {r[0] for r in inst_rows}
for r in inst_rows:
    doc_inst |= nested_keys(r[3])
scope_c = read("core/vmctld/scope.c")
compare("instance map key", packed_keys(c_function(scope_c, "scope_pack_instance")), doc_inst,
        "core/vmctld/scope.c (scope_pack_instance)")
inst_c = read("protocol/src/instance.c")
sdk_inst = set(re.findall(r'(?:map_str|map_count|map_array|idmap_parse|proto_map_get)'
                          r'\(\w+, "(\w+)"', inst_c))
compare("instance map key", sdk_inst, doc_inst, "protocol/src/instance.c")

# ---- helper notifications ----
notes = {n[0]: t for n, t in subsections(doc_section("Notifications (helper → broker)", 3))}
helper_c = read("core/vmctld/helper.c")
on_notify = c_function(helper_c, "helper_on_notify")
code_notes = set(re.findall(r'proto_notify_sb\(vmh\.conn, "(\w+)"', vmh)) | \
    set(re.findall(r'strcmp\(method, "(\w+)"\)', on_notify))
compare("helper notification", code_notes, notes, "protocol/src/vmh.c, core/vmctld/helper.c")
note_keys = {
    "progress": packed_keys(c_function(vmh, "vmh_progress")),
    "state": packed_keys(c_function(vmh, "vmh_state_changed_why")),
    "log": set(re.findall(r'proto_(?:map_get|get_\w+)\(params, "(\w+)"',
                          on_notify.split('"state"')[0])),
}
for name, keys in note_keys.items():
    if name in notes:
        compare("%s notification key" % name, keys, [r[0] for r in table(notes[name], "key")],
                "the code that sends or reads it")

# ---- CLI methods and their params ----
client = read("core/vmctld/client.c")
macros = dict(re.findall(r'#define (\w+) "([^"]*)"', client))
cli_code = {}
for m in re.finditer(r'\{"(\w+)", op_\w+, (?:true|false),((?:\s*(?:\w+|"[^"]*"))*)\s*\}',
                     c_block(client, "static const struct method methods[]")):
    spec = "".join(macros.get(p, p.strip('"')) for p in
                   re.findall(r'\w+|"[^"]*"', m.group(2)))
    cli_code[m.group(1)] = dict(kv.split(":") for kv in spec.split())
cli_doc = {}
for names, text in subsections(doc_section("Methods (CLI → broker)", 3)):
    rows = table(text, "param")
    for n in names:
        if rows is None:
            problems.append("CLI method %s: docs/protocol.md has no params table" % n)
            rows = []
        cli_doc[n] = {r[0]: r[1] for r in rows}
compare("CLI method", cli_code, cli_doc, "core/vmctld/client.c (methods)")
for name in sorted(set(cli_code) & set(cli_doc)):
    code, doc = cli_code[name], cli_doc[name]
    compare("param of %s" % name, code, doc, "core/vmctld/client.c")
    for k in sorted(set(code) & set(doc)):
        if code[k] != doc[k]:
            problems.append("param %s of %s: type %s in core/vmctld/client.c, %s in "
                            "docs/protocol.md" % (k, name, code[k], doc[k]))

# ---- error codes, features, limits ----
proto_h = read("protocol/include/vmproto/proto.h")
errors_c = read("protocol/src/errors.c")
codes = {k: -int(v) for k, v in re.findall(r"(PROTO_E_\w+) = (-\d+)", proto_h)}
code_errors = {"%d %s" % (codes[k], n) for k, n in
               re.findall(r'\{(PROTO_E_\w+), "([\w-]+)"', errors_c)}
doc_errors = {"%s %s" % (r[0], r[1]) for r in table(doc_section("Error codes", 3), "code")}
compare("error code", code_errors, doc_errors, "protocol/src/errors.c")

code_feats = set(re.findall(r'\{PROTO_FEAT_\w+, "(\w+)"', errors_c))
doc_feats = {r[0] for r in table(doc_section("Features", 4), "feature")}
compare("feature", code_feats, doc_feats, "protocol/src/errors.c (feature_table)")

LIMITS = {"one message": "PROTO_MAX_MESSAGE", "nesting depth": "PROTO_MAX_DEPTH",
          "array length": "PROTO_MAX_ARRAY", "map length": "PROTO_MAX_MAP",
          "string / binary length": "PROTO_MAX_STRING", "method name": "PROTO_MAX_METHOD",
          "requests in flight, per direction": "PROTO_MAX_INFLIGHT"}


def c_value(name):
    m = re.search(r"#define %s \(?([\d]+)u?(?: \* (\d+))?(?: \* (\d+))?\)?" % name, proto_h)
    if not m:
        raise SystemExit("check-protocol-doc: no %s in proto.h" % name)
    v = 1
    for g in m.groups():
        if g:
            v *= int(g)
    return v


def doc_value(text):
    m = re.match(r"([\d,]+)\s*(MiB|KiB)?", text)
    v = int(m.group(1).replace(",", ""))
    return v * {"MiB": 1 << 20, "KiB": 1 << 10, None: 1}[m.group(2)]


doc_limits = {r[0]: r[1] for r in table(doc_section("Limits", 3), "limit")}
compare("limit", LIMITS, doc_limits, "this checker's list of proto.h limits")
for label, macro in LIMITS.items():
    if label in doc_limits and doc_value(doc_limits[label]) != c_value(macro):
        problems.append("limit %s: %s in docs/protocol.md, %d (%s) in proto.h"
                        % (label, doc_limits[label], c_value(macro), macro))

for p in problems:
    print(p)
print("docs/protocol.md: %s" % ("%d differences from the code" % len(problems) if problems
                                else "agrees with the code"))
sys.exit(1 if problems else 0)
