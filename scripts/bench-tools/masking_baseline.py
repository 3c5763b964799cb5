#!/usr/bin/env python3
"""The baseline for Bordergate's masking engine: the same detectors in Python `re`, with the same
validation (Luhn, mod-97, TLD list, SSN areas, JWT header), run over the same texts.

    masking_baseline.py [--limit-mb N] NAME=FILE ...

Prints one JSON object: {"NAME": {"mb_per_s": ..., "bytes": ..., "values": ...}, ...}.
MaskingBench runs it on the clean and dense texts it measured, in the same run.
"""
import argparse
import base64
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tlds():
    src = open(os.path.join(ROOT, "Sources/BordergateMasking/TopLevelDomains.swift"), encoding="utf-8").read()
    body = src.split('"""')[1]
    return set(body.split())


TLDS = load_tlds()
IBAN_LEN = {e[:2]: int(e[2:]) for e in """
AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29
ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28
LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25
QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30
""".split()}

# One regex per detector, each run over the whole text (as Presidio-style recognisers do); the
# first detector in this order wins where two overlap.
PATTERNS = [(k, re.compile(p, re.S)) for k, p in [
    ("pem", r"-----BEGIN (?P<label>[A-Z ]*PRIVATE KEY)-----.{0,16384}?-----END (?P=label)-----"),
    ("auth", r"[Aa]uthorization\"?: \"?(?P<v>[^\r\n\"]{1,1024})"),
    ("kv", r"(?:password|passwd|secret) ?= ?(?P<v>[^\s&\"';,<>})\]]{1,256})"),
    ("tok", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_\w{22,255}|[sr]k_live_[A-Za-z0-9]{16,255}|xox[abposr]-[A-Za-z0-9-]{10,255}|AIza[\w-]{35})(?![\w-])"),
    ("aws", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    ("jwt", r"(?<![\w.-])eyJ[\w-]{13,}\.[\w-]{2,}\.[\w-]*"),
    ("email", r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]"),
    ("iban", r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"),
    ("ipv6", r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
    ("ipv4", r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"),
    ("ssn", r"(?<![\w.-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"),
    ("card", r"(?<![\w.-])\d{3,6}(?:[ -]?\d{1,6}){1,5}(?![\w@])"),
    ("phone", r"(?<![\w.-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,5}\)[ -]?)?\d[\d .-]{5,18}\d|(?:\(\d{1,5}\)[ -]?)?\d{1,5}(?:[ .-]\d{1,4}){1,5})(?:x\d{1,6})?(?![\w@])"),
]]


def luhn(digits):
    total, dbl = 0, False
    for d in reversed(digits):
        v = int(d)
        if dbl:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
        dbl = not dbl
    return total % 10 == 0


def valid(kind, m):
    v = m.group(0)
    if kind == "email":
        return v.rsplit(".", 1)[1].lower() in TLDS
    if kind == "iban":
        s = v.replace(" ", "")
        if IBAN_LEN.get(s[:2]) != len(s):
            return False
        n = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
        return int(n) % 97 == 1
    if kind == "card":
        d = re.sub(r"\D", "", v)
        return 13 <= len(d) <= 19 and d[0] in "23456" and luhn(d)
    if kind == "phone":
        d = re.sub(r"\D", "", v.split("x")[0])
        if not 7 <= len(d) <= 15:
            return False
        if v.startswith("+"):
            return True
        groups = [len(g) for g in re.findall(r"\d+", v.split("x")[0])]
        if re.fullmatch(r"\d{4}[-.]\d\d[-.]\d\d|\d{1,2}[-.]\d{1,2}[-.]\d{4}|\d{3}-\d\d-\d{4}", v):
            return False
        return len(groups) >= 2 and not ("." in v and groups != [3, 3, 4])
    if kind == "ipv6":
        return v.count("::") <= 1 and any(c not in ":" for c in v) and (v.count(":") == 7 or "::" in v)
    if kind == "jwt":
        h = v.split(".")[0]
        try:
            head = base64.urlsafe_b64decode(h + "=" * (-len(h) % 4))
        except Exception:
            return False
        return head.startswith(b"{") and b'"alg"' in head
    return True


def mask(text):
    found = []
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(text):
            if valid(kind, m):
                g = "v" if "v" in pattern.groupindex else 0
                found.append((m.start(g), m.end(g), kind))
    found.sort(key=lambda f: (f[0], [k for k, _ in PATTERNS].index(f[2])))
    out, at, count = [], 0, 0
    for s, e, kind in found:
        if s < at:
            continue
        out.append(text[at:s])
        out.append("[" + kind.upper() + "]")
        at = e
        count += 1
    out.append(text[at:])
    return "".join(out), count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit-mb", type=float, default=1)
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    result = {}
    for spec in a.inputs:
        name, path = spec.split("=", 1)
        data = open(path, "rb").read()[: int(a.limit_mb * 1e6)].decode("utf-8", "replace")
        t = time.thread_time()   # CPU time: MB/s per core, as MaskingBench measures
        _, count = mask(data)
        dt = time.thread_time() - t
        n = len(data.encode())
        result[name] = {"mb_per_s": round(n / dt / 1e6, 2), "bytes": n, "values": count}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
