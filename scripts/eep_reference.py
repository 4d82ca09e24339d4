#!/usr/bin/env python3
"""The EEP reference (`../shared/reference/enoceanjs_eep.json`, a dump of the EnOcean Alliance
EEP data from the enocean-js project) against our profiles.

    scripts/eep_reference.py missing [REFERENCE]
        EEPs of the reference without a file in eep-profiles/ (one per line), then a count.
    scripts/eep_reference.py ids [REFERENCE] > tests/data/reference_eeps.txt
        Every EEP of the reference, one per line (the list tests/eep_coverage.rs counts against).
    scripts/eep_reference.py fields [REFERENCE] > tests/data/reference_fields.tsv
        Every non-reserved field of the reference (EEP, shortcut, bit ranges, range, scale, unit),
        the facts tests/eep_coverage.rs checks every profile against.
    scripts/eep_reference.py draft EEP... [--out DIR] [--reference FILE]
        A first draft of a profile per EEP from the reference: cases, selectors, fields, scales,
        enum labels, and golden vectors whose expectations are computed here from the reference's
        own range/scale/enum data (not by our decoder), so decoding a draft with the engine
        cross-checks the file against the reference. Drafts are reviewed and edited by hand before
        they go into eep-profiles/ (keys, labels, spec notes, divergences); fields whose semantic
        key is not in KEYMAP below get `key = "?SHORTCUT"` and fail validation until chosen.

Facts only: the reference is data to check against, nothing of it is shipped.
"""

import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "enoceanjs_eep.json")
if not os.path.exists(DEFAULT_REFERENCE):
    DEFAULT_REFERENCE = "/work/shared/reference/enoceanjs_eep.json"


def as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def text(x):
    return x.strip() if isinstance(x, str) else ""


def num(s):
    """A reference number: decimal, 0x hex or 0b binary; None when it is not one."""
    if s is None:
        return None
    if isinstance(s, (int, float)):
        return s
    s = str(s).strip().replace(",", ".").replace("+", "")
    try:
        if s.lower().startswith("0x"):
            return int(s, 16)
        if s.lower().startswith("0b"):
            return int(s, 2)
        f = float(s)
        return int(f) if f.is_integer() else f
    except ValueError:
        return None


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def have_profiles():
    d = os.path.join(ROOT, "eep-profiles")
    return {f[:-5].lower() for f in os.listdir(d) if f.endswith(".toml")}


# --- semantic keys ------------------------------------------------------------------------------
# (EEP prefix, shortcut) -> key; the longest matching prefix wins ("" matches every EEP).
KEYMAP = {}


def keymap(prefix, **pairs):
    for shortcut, key in pairs.items():
        KEYMAP[(prefix.lower(), shortcut)] = key


keymap("", TMP="temperature", TEMP="temperature", HUM="humidity", ILL="illuminance",
       SV="supply_voltage", SVC="supply_voltage", CO2="co2", OCC="occupancy_button",
       FAN="fan_speed", CMD="command", CHN="channel", BATT="battery", BS="battery")


# Light and gas sensors.
keymap("a5-06-04", SV="energy_level", TMPAV="temperature_sensor", ENAV="energy_level_sensor")
keymap("a5-06-05", ILL1="illuminance", ILL2="illuminance", RS="range_select")
keymap("a5-09-06", Act="radon")
keymap("a5-09-0a", Conc="hydrogen", TSA="temperature_sensor", SVA="supply_voltage_available")
keymap("a5-09-0b", SCM="scale_multiplier", VUNIT="measurement_unit",
       SVA="supply_voltage_available", Ract="radiation_dose_rate")


def key_kinds():
    """Semantic key -> kind (Number, Label, Bool, Any), from src/eep/keys_table.rs."""
    with open(os.path.join(ROOT, "src", "eep", "keys_table.rs"), encoding="utf-8") as f:
        return dict(re.findall(r'k\("([^"]+)", [^,]+(?:\("[^"]*"\))?, (\w+),', f.read()))


NEGATIVE = re.compile(r"\b(not|no|un\w*|disabled?|false|off|released|absent|low)\b", re.I)


def key_for(eep, shortcut):
    best = None
    for (prefix, sc), key in KEYMAP.items():
        if sc == shortcut and eep.lower().startswith(prefix):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, key)
    return best[1] if best else None


# --- labels -------------------------------------------------------------------------------------
SKIP = re.compile(r"^(reserved|not used|unused|n/?a)\b", re.I)


def label(desc, raw):
    d = re.sub(r"<[^>]*>", " ", desc)
    d = d.replace("°", "deg").replace("%", "pct").replace("≥", "ge").replace("≤", "le")
    d = re.sub(r"\(.*?\)", " ", d)
    slug = re.sub(r"[^a-z0-9]+", "_", d.lower()).strip("_")
    words = slug.split("_")
    slug = "_".join(words[:5])
    return slug or f"value_{raw}"


# --- drafting -----------------------------------------------------------------------------------
SELECTOR_SHORTCUTS = {"CMD", "MID", "MT", "MI", "COM", "ID", "MSGID", "MSGS", "MSG_ID"}


def resolve(ref, eep):
    v = ref[eep]
    seen = set()
    while "case" not in v and v.get("ref") and v["ref"] in ref and v["ref"] not in seen:
        seen.add(v["ref"])
        v = dict(ref[v["ref"]], **{k: v[k] for k in ("eep", "title", "number") if k in v},
                 _ref=v["ref"])
    return v


class Field:
    def __init__(self, f):
        self.raw = f
        self.shortcut = text(f.get("shortcut")) or "?"
        self.data = text(f.get("data"))
        spread = f.get("spread")
        if spread:
            parts = [(int(p["bitoffs"]), int(p["bitsize"])) for p in spread]
        else:
            parts = [(int(f["bitoffs"]), int(f["bitsize"]))]
        self.parts = parts
        self.size = sum(s for _, s in parts)
        self.end = max(o + s for o, s in parts)
        rng, sc = f.get("range"), f.get("scale")
        self.range = (num(rng.get("min")), num(rng.get("max"))) if isinstance(rng, dict) else None
        self.scale = (num(sc.get("min")), num(sc.get("max"))) if isinstance(sc, dict) else None
        self.unit = text(f.get("unit"))
        items = []
        for en in as_list(f.get("enum")):
            items.extend(as_list(en.get("item")) if isinstance(en, dict) else [])
        self.items = []
        for it in items:
            desc = text(it.get("description"))
            if "value" in it:
                v = num(it["value"])
                if v is None:
                    continue
                self.items.append((v, v, desc))
            else:
                lo, hi = num(it.get("min")), num(it.get("max"))
                if lo is None or hi is None:
                    continue
                self.items.append((lo, hi, desc))

    def numeric(self):
        if self.range and not self.scale and None not in self.range:
            self.scale = self.range
        return (self.range and self.scale and None not in self.range and None not in self.scale
                and isinstance(self.range[0], int) and isinstance(self.range[1], int))


def is_lrn(f):
    return text(f.get("shortcut")) in ("LRNB", "LRN") or text(f.get("data")).lower() == "lrn bit"


def case_selects(case, fields):
    sel = []
    for df in as_list((case.get("condition") or {}).get("datafield")):
        sel.append((int(df["bitoffs"]), int(df["bitsize"]), num(df["value"])))
    if not sel:
        for f in fields:
            if f.shortcut.upper().replace(" ", "") in SELECTOR_SHORTCUTS and len(f.items) == 1 \
                    and f.items[0][0] == f.items[0][1] and len(f.parts) == 1:
                o, s = f.parts[0]
                sel.append((o, s, f.items[0][0]))
    return sel


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def fmt_num(x):
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return repr(x) if isinstance(x, float) else str(x)


KINDS = {}


def draft(ref, eep):
    KINDS.update(key_kinds())
    v = resolve(ref, eep)
    rorg = int(v["rorg_number"], 16)
    title = text(v.get("title"))
    if title.lower().startswith("type 0x") or title.lower().startswith("see "):
        title = f"{text(v.get('func_title'))} (type {eep[-2:].upper()})"
    out = [f'eep = "{eep.upper()}"', f"title = {toml_str(title)}"]
    desc = f"From the EEP data (enocean-js dump): {text(v.get('func_title'))}."
    if v.get("_ref"):
        desc += f" The reference gives this type no layout of its own: it refers to {v['_ref'].upper()}, whose layout is used."
    out.append(f"description = {toml_str(desc)}")
    vectors = []
    todo = []
    for ci, case in enumerate(as_list(v.get("case"))):
        dfs = as_list(case.get("datafield"))
        fields = [Field(f) for f in dfs if "reserved" not in f and not is_lrn(f)]
        ext = max([Field(f).end for f in dfs] + [0])
        nbytes = 4 if rorg == 0xA5 else 1 if rorg in (0xF6, 0xD5) else max(1, math.ceil(ext / 8))
        out.append("")
        out.append("[[case]]")
        name = re.sub(r"\s+", " ", text(case.get("title")))
        if name:
            out.append(f"name = {toml_str(name)}")
        cond = case.get("condition") or {}
        if cond.get("direction"):
            out.append(f"direction = {int(cond['direction'])}")
        st = {}
        for sf in as_list(cond.get("statusfield")):
            bit = int(sf["bitoffs"])
            st["t21" if bit == 2 else "nu"] = "true" if num(sf["value"]) else "false"
        if st:
            out.append("status = { " + ", ".join(f"{k} = {val}" for k, val in st.items()) + " }")
        if rorg == 0xD2:
            out.append(f"length = {nbytes}")
        sels = case_selects(case, fields)
        if sels:
            out.append("select = [" + ", ".join(
                f"{{ offset = {o}, size = {s}, value = {val} }}" for o, s, val in sels) + "]")
        lo_vals, hi_vals = {}, {}
        lo_exp, hi_exp = {}, {}
        for f in sorted(fields, key=lambda f: f.parts[0][0]):
            key = key_for(eep, f.shortcut)
            if key is None:
                key = "?" + f.shortcut
                todo.append(f"{f.shortcut} ({f.data})")
            out.append("[[case.field]]")
            out.append(f"shortcut = {toml_str(f.shortcut)}")
            out.append(f"key = {toml_str(key)}")
            if f.data:
                d = f.data + (f" [{f.unit}]" if f.unit else "")
                out.append(f"description = {toml_str(d)}")
            o, s = f.parts[0]
            out.append(f"offset = {o}")
            out.append(f"size = {s}")
            if len(f.parts) > 1:
                out.append("more_bits = [" + ", ".join(
                    f"{{ offset = {po}, size = {ps} }}" for po, ps in f.parts[1:]) + "]")
            full = (1 << f.size) - 1
            if f.numeric():
                r0, r1 = f.range
                s0, s1 = f.scale
                if not (r0 == s0 and r1 == s1 and min(r0, r1) == 0 and max(r0, r1) == full):
                    out.append(f"scale = {{ raw = [{fmt_num(r0)}, {fmt_num(r1)}], value = [{fmt_num(s0)}, {fmt_num(s1)}] }}")
                lo_vals[f] = r0
                hi_vals[f] = r1
                lo_exp[key] = {"raw": r0, "value": s0}
                hi_exp[key] = {"raw": r1, "value": s1}
            elif f.items and KINDS.get(key) == "Bool" and f.size == 1:
                one = [d for lo, hi, d in f.items if lo == 1]
                zero = [d for lo, hi, d in f.items if lo == 0]
                invert = bool(one and NEGATIVE.search(one[0]) and not (zero and NEGATIVE.search(zero[0])))
                out.append("bool = true")
                if invert:
                    out.append("invert = true")
                lo_vals[f] = 0
                hi_vals[f] = 1
                lo_exp[key] = invert
                hi_exp[key] = not invert
            elif f.items:
                named = [(lo, hi, d) for lo, hi, d in f.items if not SKIP.match(d)]
                used = set()
                items = []
                for lo, hi, d in named:
                    lab = label(d, lo)
                    while lab in used:
                        lab += "_"
                    used.add(lab)
                    if lo == hi:
                        items.append(f'{{ raw = {lo}, label = "{lab}" }}')
                    else:
                        items.append(f'{{ min = {lo}, max = {hi}, label = "{lab}" }}')
                if items:
                    out.append("enum = [" + ", ".join(items) + "]")
                    first, last = named[0], named[-1]
                    lo_vals[f] = first[0]
                    hi_vals[f] = last[1]
                    lo_exp[key] = label(first[2], first[0])
                    hi_exp[key] = [i for i in items if i][-1].split('label = "')[1].rstrip('" }')
                else:
                    lo_vals[f] = 0
                    lo_exp[key] = {"raw": 0}
            else:
                lo_vals[f] = 0
                hi_vals[f] = full
                lo_exp[key] = {"raw": 0}
                hi_exp[key] = {"raw": full}
            out.append("")
        for which, vals, exp in (("low", lo_vals, lo_exp), ("high", hi_vals, hi_exp)):
            bits = [0] * (nbytes * 8)

            def put(o, s, val):
                for i in range(s):
                    if o + i < len(bits):
                        bits[o + i] = (int(val) >> (s - 1 - i)) & 1

            for f, val in vals.items():
                rem = int(val)
                for po, ps in reversed(f.parts):
                    put(po, ps, rem & ((1 << ps) - 1))
                    rem >>= ps
            for o, s, val in sels:
                put(o, s, val)
            if rorg == 0xA5:
                bits[28] = 1
            if rorg == 0xD5:
                bits[4] = 1
            payload = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
            exp = {k: e for k, e in exp.items() if not k.startswith("?")}
            if exp:
                vectors.append((f"{name or 'case ' + str(ci)}: every field at the {which} end of its reference range",
                                payload.hex().upper(), exp, st))
    for note, payload, exp, st in vectors:
        out.append("[[vector]]")
        out.append(f"note = {toml_str(note)}")
        out.append(f'payload = "{payload}"')
        if st:
            status = (0x20 if st.get("t21") == "true" else 0) | (0x10 if st.get("nu") == "true" else 0)
            out.append(f"status = {status}")
        parts = []
        for k, e in exp.items():
            if isinstance(e, dict):
                inner = ", ".join(f"{kk} = {fmt_num(vv)}" for kk, vv in e.items())
                parts.append(f"{k} = {{ {inner} }}")
            elif isinstance(e, bool):
                parts.append(f"{k} = {'true' if e else 'false'}")
            else:
                parts.append(f"{k} = {toml_str(e)}")
        out.append("expect = { " + ", ".join(parts) + " }")
        out.append("")
    return "\n".join(out).rstrip() + "\n", todo


def main(argv):
    args = argv[1:]
    if not args:
        print(__doc__)
        return 2
    cmd = args.pop(0)
    reference = DEFAULT_REFERENCE
    out_dir = None
    rest = []
    while args:
        a = args.pop(0)
        if a == "--reference":
            reference = args.pop(0)
        elif a == "--out":
            out_dir = args.pop(0)
        else:
            rest.append(a)
    if cmd in ("missing", "ids", "fields") and rest:
        reference = rest.pop(0)
    ref = load(reference)
    if cmd == "ids":
        for k in ref:
            print(k.upper())
        return 0
    if cmd == "fields":
        print("# eep\tshortcut\tbits (offset:size, high part first)\traw range\tscale\tunit")
        for k in ref:
            v = resolve(ref, k)
            for case in as_list(v.get("case")):
                for df in as_list(case.get("datafield")):
                    if "reserved" in df or is_lrn(df):
                        continue
                    f = Field(df)
                    bits = ",".join(f"{o}:{s}" for o, s in f.parts)
                    numeric = f.numeric()
                    rng = f"{fmt_num(f.range[0])}..{fmt_num(f.range[1])}" if numeric else "-"
                    scale = f"{fmt_num(f.scale[0])}..{fmt_num(f.scale[1])}" if numeric else "-"
                    unit = re.sub(r"\s+", " ", f.unit) or "-"
                    print(f"{k.upper()}\t{f.shortcut}\t{bits}\t{rng}\t{scale}\t{unit}")
        return 0
    if cmd == "missing":
        have = have_profiles()
        missing = [k for k in ref if k not in have]
        for k in missing:
            print(k.upper())
        print(f"{len(missing)} of {len(ref)} reference EEPs have no profile", file=sys.stderr)
        return 0
    if cmd == "draft":
        for eep in rest:
            text_, todo = draft(ref, eep.lower())
            if out_dir:
                os.makedirs(out_dir, exist_ok=True)
                with open(os.path.join(out_dir, eep.upper() + ".toml"), "w", encoding="utf-8") as f:
                    f.write(text_)
            else:
                sys.stdout.write(text_)
            if todo:
                print(f"{eep.upper()}: no key for " + "; ".join(todo), file=sys.stderr)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
