#!/usr/bin/python3
"""Fail when docs/writing-a-helper.md's walk-through drifts from the toy helper.

  check-helper-doc.py [SOURCE_DIR]

The ops struct and main() quoted in "The toy helper, step by step" must be
in examples/toy-helper/toy.c as written; every handler of that struct must
be described under "The handlers" and every toy_* name described there
must exist; the files and tools the page names must exist.
"""
import os
import re
import sys

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
problems = []
doc = open(os.path.join(SRC, "docs/writing-a-helper.md"), encoding="utf-8").read()
toy = open(os.path.join(SRC, "examples/toy-helper/toy.c"), encoding="utf-8").read()

start = doc.index("## The toy helper, step by step")
walk = doc[start:doc.index("\n## ", start + 1)]
blocks = re.findall(r"```c\n(.*?)```", walk, re.S)
if not blocks:
    problems.append("the walk-through quotes no C code")
for b in blocks:
    if b.strip() not in toy:
        problems.append("the walk-through quotes code that is not in toy.c:\n%s" % b)

handlers_text = walk[walk.index("### The handlers"):walk.index("### Readiness")]
described = set(re.findall(r"`(toy_\w+)`", handlers_text))
described |= {"toy_instance_" + m for m in re.findall(r"`_(\w+)`", handlers_text)}
members = set(re.findall(r"^\t\.\w+ = (toy_\w+),$", toy, re.M))
for name in sorted(members - described - {"toy_fini"}):
    problems.append("handler %s of toy.c is not described under 'The handlers'" % name)
for name in sorted(described - set(re.findall(r"\b(toy_\w+)\(", toy))):
    problems.append("'The handlers' describes %s, which toy.c does not have" % name)

for path in sorted(set(re.findall(r"(?<![\w/])((?:tools|examples|tests)/[\w./-]+\w)", doc))):
    if not os.path.exists(os.path.join(SRC, path)):
        problems.append("the page names %s, which does not exist" % path)

for p in problems:
    print(p)
print("docs/writing-a-helper.md: %s" % ("%d problems" % len(problems) if problems
                                         else "agrees with examples/toy-helper"))
sys.exit(1 if problems else 0)
