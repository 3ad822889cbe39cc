#!/usr/bin/env python3
"""Regenerate mitre-atlas.json from MITRE ATLAS's distributed ATLAS.yaml.

Written by the Warden team. Uses the Python standard library only (no PyYAML):
ATLAS.yaml as distributed by mitre-atlas/atlas-data (dist/ATLAS.yaml) is a
regular block-style YAML dump, so a small line-oriented reader is enough to
pull out the facts we need: the data version, every tactic (id, name) and
every technique and sub-technique (id, name, tactic ids, parent id).

Only ids, names and relations are extracted. MITRE's prose descriptions are
deliberately not copied.

Usage:
    python3 extract_atlas.py [PATH/TO/ATLAS.yaml] [PATH/TO/OUTPUT.json]

Defaults: /work/shared/data/mitre-atlas/ATLAS.yaml and mitre-atlas.json next
to this script. The LICENSE file is looked for beside ATLAS.yaml.

Notes on the data:
  * In ATLAS.yaml only top-level techniques carry a `tactics:` list.
    Sub-techniques (`AML.T####.###`) carry `subtechnique-of:` instead; this
    script gives each sub-technique its parent's tactic ids and marks that
    with "tactics_inherited": true.
  * The script fails loudly if the file does not look as expected
    (unknown id shapes, a sub-technique whose parent is missing, a
    top-level technique without tactics, a tactic reference to an unknown
    tactic), rather than silently writing partial data.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_YAML = "/work/shared/data/mitre-atlas/ATLAS.yaml"
DEFAULT_OUT = os.path.join(HERE, "mitre-atlas.json")

TACTIC_ID = re.compile(r"^AML\.TA\d{4}$")
TECH_ID = re.compile(r"^AML\.T\d{4}$")
SUBTECH_ID = re.compile(r"^AML\.T\d{4}\.\d{3}$")


def unquote(value):
    """Decode a YAML plain, single-quoted or double-quoted scalar (one logical line)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return json.loads(value)  # YAML double-quoted escapes are a superset; fine for names
    return value


def read_scalar(lines, i, first):
    """Read a scalar that starts on line i (text `first`) and may continue on
    more-indented lines (YAML line folding). Returns (value, next_index)."""
    parts = [first.strip()]
    j = i + 1
    while j < len(lines):
        nxt = lines[j]
        if nxt.startswith("      ") and nxt.strip():  # indent >= 6: continuation of a 4-indent key
            parts.append(nxt.strip())
            j += 1
        else:
            break
    return unquote(" ".join(parts)), j


def parse(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()

    version = None
    top_id = None
    top_name = None
    section = None        # 'tactics' | 'techniques' | other, inside the matrix
    in_matrices = False
    current = None
    tactics, techniques = [], []

    def flush():
        if current is None:
            return
        if section == "tactics":
            tactics.append(current)
        elif section == "techniques":
            techniques.append(current)

    i = 0
    while i < len(lines):
        line = lines[i]
        # top-level keys
        m = re.match(r"^([A-Za-z][\w&-]*):(?: (.*))?$", line)
        if m:
            key, val = m.group(1), m.group(2)
            if in_matrices:
                flush()
                current = None
                section = None
            in_matrices = key == "matrices"
            if key == "version":
                version = unquote(val)
            elif key == "id":
                top_id = unquote(val)
            elif key == "name":
                top_name = unquote(val)
            i += 1
            continue
        if not in_matrices:
            i += 1
            continue
        # sections inside the (single) matrix
        m = re.match(r"^  ([A-Za-z][\w&-]*):\s*$", line)
        if m:
            flush()
            current = None
            section = m.group(1)
            i += 1
            continue
        if section not in ("tactics", "techniques"):
            i += 1
            continue
        m = re.match(r"^  - id: (.+)$", line)
        if m:
            flush()
            current = {"id": unquote(m.group(1))}
            i += 1
            continue
        if current is None:
            i += 1
            continue
        m = re.match(r"^    name: (.*)$", line)
        if m:
            current["name"], i = read_scalar(lines, i, m.group(1))
            continue
        m = re.match(r"^    subtechnique-of: (.+)$", line)
        if m:
            current["parent"] = unquote(m.group(1))
            i += 1
            continue
        m = re.match(r"^    tactics:\s*$", line)
        if m:
            ids = []
            i += 1
            while i < len(lines):
                t = re.match(r"^    - (.+)$", lines[i])
                if not t:
                    break
                ids.append(unquote(t.group(1)))
                i += 1
            current["tactics"] = ids
            continue
        i += 1
    if in_matrices:
        flush()
    return version, top_id, top_name, tactics, techniques


def check_and_build(version, tactics, techniques):
    if not version:
        sys.exit("no top-level version found")
    tactic_ids = set()
    for t in tactics:
        if not TACTIC_ID.match(t["id"]) or not t.get("name"):
            sys.exit(f"unexpected tactic entry: {t}")
        if t["id"] in tactic_ids:
            sys.exit(f"duplicate tactic {t['id']}")
        tactic_ids.add(t["id"])
    by_id = {}
    for t in techniques:
        if t["id"] in by_id:
            sys.exit(f"duplicate technique {t['id']}")
        by_id[t["id"]] = t
    out = []
    for t in techniques:
        tid = t["id"]
        if not t.get("name"):
            sys.exit(f"technique without name: {tid}")
        if SUBTECH_ID.match(tid):
            parent = t.get("parent")
            if parent is None or parent not in by_id or parent != tid.rsplit(".", 1)[0]:
                sys.exit(f"sub-technique {tid} has bad parent {parent}")
            if "tactics" in t:
                sys.exit(f"sub-technique {tid} unexpectedly lists tactics itself")
            ptac = by_id[parent].get("tactics")
            if not ptac:
                sys.exit(f"parent {parent} of {tid} has no tactics")
            out.append({"id": tid, "name": t["name"], "tactics": list(ptac),
                        "parent": parent, "tactics_inherited": True})
        elif TECH_ID.match(tid):
            if "parent" in t:
                sys.exit(f"technique {tid} unexpectedly has a parent")
            tac = t.get("tactics")
            if not tac:
                sys.exit(f"technique {tid} lists no tactics")
            out.append({"id": tid, "name": t["name"], "tactics": list(tac)})
        else:
            sys.exit(f"unexpected technique id {tid}")
        for ta in out[-1]["tactics"]:
            if ta not in tactic_ids:
                sys.exit(f"{tid} refers to unknown tactic {ta}")
    return [{"id": t["id"], "name": t["name"]} for t in tactics], out


def licence_text(yaml_path):
    lic = os.path.join(os.path.dirname(yaml_path), "LICENSE")
    try:
        with open(lic, encoding="utf-8") as f:
            first = [l.strip() for l in f.read().splitlines() if l.strip()]
    except OSError:
        return None
    return first


def dump(obj):
    """JSON with one array element per line, so the file stays compact but diffable."""
    parts = ["{"]
    keys = list(obj.keys())
    for n, k in enumerate(keys):
        v = obj[k]
        comma = "," if n < len(keys) - 1 else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            parts.append(f"  {json.dumps(k)}: [")
            for m, item in enumerate(v):
                c2 = "," if m < len(v) - 1 else ""
                parts.append("    " + json.dumps(item, ensure_ascii=False) + c2)
            parts.append("  ]" + comma)
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{comma}")
    parts.append("}")
    return "\n".join(parts) + "\n"


def main(argv):
    yaml_path = argv[1] if len(argv) > 1 else DEFAULT_YAML
    out_path = argv[2] if len(argv) > 2 else DEFAULT_OUT
    version, top_id, top_name, tactics, techniques = parse(yaml_path)
    tac_out, tech_out = check_and_build(version, tactics, techniques)
    lic = licence_text(yaml_path)
    n_sub = sum(1 for t in tech_out if "parent" in t)
    doc = {
        "source": {
            "title": f"MITRE ATLAS ({top_name})" if top_name else "MITRE ATLAS",
            "publisher": "The MITRE Corporation",
            "version": version,
            "data_file": "dist/ATLAS.yaml from the public repository mitre-atlas/atlas-data "
                         "(local copy: /work/shared/data/mitre-atlas/ATLAS.yaml, commit 8ee2c68 per its README)",
            "url": "https://atlas.mitre.org/ ; https://github.com/mitre-atlas/atlas-data",
        },
        "licence": {
            "spdx": "Apache-2.0",
            "notice": " ".join(lic[:1]) if lic else "Copyright MITRE; Apache License 2.0",
            "text_summary": "Licensed under the Apache License, Version 2.0; see the LICENSE file distributed "
                            "beside ATLAS.yaml (http://www.apache.org/licenses/LICENSE-2.0). Only ids, names "
                            "and relations are extracted here; MITRE's prose descriptions are not copied.",
        },
        "note": "Written by the Warden team from the public MITRE ATLAS data file by extract_atlas.py "
                "(Python standard library only). Sub-techniques do not list tactics in ATLAS.yaml; "
                "their tactics are inherited from the parent technique (tactics_inherited: true).",
        "atlas_version": version,
        "matrix_id": top_id,
        "counts": {"tactics": len(tac_out), "techniques_total": len(tech_out),
                   "techniques_top_level": len(tech_out) - n_sub, "sub_techniques": n_sub},
        "tactics": tac_out,
        "techniques": tech_out,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(dump(doc))
    print(f"wrote {out_path}: ATLAS {version}, {len(tac_out)} tactics, "
          f"{len(tech_out)} techniques ({len(tech_out) - n_sub} top-level, {n_sub} sub-techniques)")


if __name__ == "__main__":
    main(sys.argv)
