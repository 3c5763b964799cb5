#!/usr/bin/env python3
"""A labelled corpus for Bordergate's masking detectors, reproducible (seeded Faker).

    scripts/masking-corpus.py [--seed N] [--records N] [-o FILE]

Writes JSON lines: {"kind": "clean"|"mixed", "text": ..., "spans": [[start, end, detector], ...]}
with UTF-8 byte offsets. "mixed" lines hold real values and decoys (Luhn-failing numbers, UUIDs,
hashes, dates, version numbers, order ids, bad IBAN check digits, invalid SSN areas, e-mail
addresses without a real TLD, certificates, test-mode keys, ...) which must not be detected;
"clean" lines are prose. The committed fixture is Tests/BordergateMaskingTests/Fixtures/masking-corpus.jsonl;
MaskingBench also builds its clean and dense texts from it. Needs Faker (pip install faker).
"""
import argparse
import base64
import hashlib
import ipaddress
import json
import random
import string
import sys
import uuid

try:
    from faker import Faker
except ImportError:
    sys.exit("masking-corpus.py: Faker is missing; install it with: pip install faker")

B64URL = string.ascii_letters + string.digits + "-_"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        Faker.seed(seed)
        self.us = Faker("en_US")
        self.intl = {loc: Faker(loc) for loc in ("en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT")}

    def rs(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def locale(self):
        return self.intl[self.r.choice(sorted(self.intl))]

    # ---- values: (text, detector, [offset within text, end]) ----

    def email(self):
        f = self.r.choice([self.us, self.locale()])
        e = self.r.choice([f.email, f.company_email, f.free_email, f.ascii_email])()
        if self.r.random() < 0.15:
            e = e.upper()
        return e, "email"

    def card(self):
        n = self.us.credit_card_number()
        while len(n) < 13:   # Faker's 12-digit Maestro numbers: the detector's range is 13-19
            n = self.us.credit_card_number()
        style = self.r.random()
        if len(n) == 16 and style < 0.35:
            sep = self.r.choice(" -")
            n = sep.join(n[i:i + 4] for i in range(0, 16, 4))
        elif len(n) == 15 and n[:2] in ("34", "37") and style < 0.35:
            n = f"{n[:4]} {n[4:10]} {n[10:]}"
        return n, "credit-card"

    def iban(self):
        v = self.locale().iban()
        if self.r.random() < 0.4:
            v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
        return v, "iban"

    def ssn(self):
        return self.us.ssn(), "us-ssn"

    def phone(self):
        f = self.r.choice([self.us, self.us, self.locale()])
        return f.phone_number(), "phone"

    def ip(self):
        if self.r.random() < 0.5:
            return self.us.ipv4_public(), "ip-address"
        a = ipaddress.IPv6Address(self.r.getrandbits(128) & ~(0xffff << 80) if self.r.random() < 0.4 else self.r.getrandbits(128))
        return (a.compressed if self.r.random() < 0.7 else a.exploded), "ip-address"

    def aws(self):
        return self.r.choice(["AKIA", "ASIA"]) + self.rs(string.ascii_uppercase + "234567", 16), "aws-access-key"

    def jwt(self):
        header = b64url(json.dumps({"alg": self.r.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
        payload = b64url(json.dumps({"sub": str(self.r.randint(1, 10**6)), "name": self.us.name(),
                                     "iat": self.r.randint(1.6e9, 1.8e9)}).encode())
        sig = self.rs(B64URL, self.r.choice([43, 86]))
        return f"{header}.{payload}.{sig}", "jwt"

    def pem(self):
        label = self.r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        body = "\n".join(base64.b64encode(self.r.randbytes(48)).decode() for _ in range(self.r.randint(2, 3)))
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----", "private-key"

    def token(self):
        k = self.r.randrange(7)
        alnum = string.ascii_letters + string.digits
        if k == 0:
            return "ghp_" + self.rs(alnum, 36), "secret-token"
        if k == 1:
            return "github_pat_" + self.rs(alnum, 22) + "_" + self.rs(alnum, 59), "secret-token"
        if k == 2:
            return f"xox{self.r.choice('bpa')}-{self.r.randint(10**11, 10**12)}-{self.r.randint(10**11, 10**12)}-{self.rs(alnum, 24)}", "secret-token"
        if k == 3:
            return "sk_live_" + self.rs(alnum, 24), "secret-token"
        if k == 4:
            return "AIza" + self.rs(alnum + "-_", 35), "secret-token"
        if k == 5:
            # only the value is the secret: the key stays
            return ("password=", self.us.password(length=12, special_chars=False)), "secret-token"
        return ("Authorization: ", "Bearer " + self.rs(alnum, 32)), "secret-token"

    VALUE_KINDS = ("email", "card", "iban", "ssn", "phone", "ip", "aws", "jwt", "pem", "token")

    # ---- decoys: text that must be left alone ----

    def decoy(self):
        k = self.r.randrange(22)
        r = self.r
        if k == 0:
            while True:
                n = self.us.credit_card_number()
                if len(n) < 13:
                    continue
                d = list(n)
                d[-1] = str((int(d[-1]) + r.randint(1, 9)) % 10)
                n = "".join(d)
                return n if r.random() < 0.5 else " ".join(n[i:i + 4] for i in range(0, len(n), 4))
        if k == 1:
            return str(uuid.UUID(int=r.getrandbits(128)))
        if k == 2:
            return hashlib.sha256(r.randbytes(8)).hexdigest()
        if k == 3:
            return hashlib.sha1(r.randbytes(8)).hexdigest()
        if k == 4:
            d = self.us.date_object()
            return r.choice([d.isoformat(), d.strftime("%d.%m.%Y"), d.strftime("%m/%d/%Y"), d.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             d.strftime("%d-%m-%Y")])
        if k == 5:
            return r.choice(["v", "", "release "]) + ".".join(str(r.randint(0, 30)) for _ in range(3))
        if k == 6:
            return r.choice(["ORD-", "INV-", "#A", "order ", "PO-"]) + f"{r.randint(2015, 2026)}-{r.randint(0, 999999):06d}"
        if k == 7:
            v = self.locale().iban()
            bad = (int(v[2:4]) + r.randint(1, 50)) % 97
            return v[:2] + f"{bad:02d}" + v[4:]
        if k == 8:
            return f"{r.choice(['000', '666', str(r.randint(900, 999))])}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
        if k == 9:
            return f"{self.us.user_name()}@{r.choice(['localhost', 'build.local', 'runner.internal', 'db.corp', 'host.invalidtld'])}"
        if k == 10:
            return "AKIA" + self.rs(string.ascii_uppercase, r.randint(4, 12))
        if k == 11:
            return ".".join(self.rs(B64URL, r.randint(4, 20)) for _ in range(3))
        if k == 12:
            return b64url(b'{"typ":"JWT","kid":"1"}') + "." + b64url(b'{"x":1}') + "." + self.rs(B64URL, 20)
        if k == 13:
            label = r.choice(["CERTIFICATE", "PUBLIC KEY"])
            body = base64.b64encode(r.randbytes(48)).decode()
            return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"
        if k == 14:
            return r.choice(["sk_test_", "ghp_", "xoxz-", "AIza"]) + self.rs(string.ascii_letters, r.randint(5, 14))
        if k == 15:
            return r.choice([f"${r.randint(1, 9)},{r.randint(100, 999)}.{r.randint(0, 99):02d}", str(r.randint(1.5e9, 1.8e9)),
                             f"port {r.randint(1024, 65535)}", f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"])
        if k == 16:
            return r.choice([f"{r.randint(256, 999)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(0, 255)}",
                             f"{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)}"])
        if k == 17:
            return f"{r.randint(1990, 2020)}-{r.randint(2021, 2026)}"
        if k == 18:
            return f"{r.randint(1, 999)} {r.randint(100, 999):03d} {r.randint(100, 999):03d}"
        if k == 19:
            return ":".join(f"{r.randint(0, 255):02x}" for _ in range(6))
        if k == 20:
            return r.choice(["std::vector", "a::b::c", "10:30", "::"])
        return r.choice(["Authorization required", "password reset", "passwords=3", "api_key_count: 4"])

    def sentence(self):
        s = self.us.sentence(nb_words=self.r.randint(5, 14))
        return s.replace("@", " at ")

    def clean_line(self):
        text = " ".join(self.us.paragraph(nb_sentences=self.r.randint(2, 5)) for _ in range(1))
        return {"kind": "clean", "text": text, "spans": []}

    def mixed_line(self):
        parts, spans = [], []
        pos = 0

        def add(s):
            nonlocal pos
            parts.append(s)
            pos += len(s.encode())

        fmt = self.r.random()
        items = self.r.randint(1, 4)
        if fmt < 0.3:   # JSON-ish
            add("{")
            for n in range(items):
                if n:
                    add(", ")
                if self.r.random() < 0.7:
                    v, det = getattr(self, self.r.choice(self.VALUE_KINDS))()
                    add(f'"{self.us.word()}": "')
                    self._value(v, det, add, spans, lambda: pos)
                    add('"')
                else:
                    add(f'"{self.us.word()}": "{self.decoy()}"')
            add("}")
        else:
            for n in range(items):
                add(self.sentence()[:-1] + " ")
                if self.r.random() < 0.7:
                    v, det = getattr(self, self.r.choice(self.VALUE_KINDS))()
                    self._value(v, det, add, spans, lambda: pos)
                else:
                    add(self.decoy())
                add(self.r.choice([". ", ", ", "; ", " and ", "\n"]))
        return {"kind": "mixed", "text": "".join(parts), "spans": spans}

    def _value(self, v, det, add, spans, pos):
        if isinstance(v, tuple):
            add(v[0])
            v = v[1]
        start = pos()
        add(v)
        spans.append([start, pos(), det])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--records", type=int, default=900)
    ap.add_argument("-o", "--output", default="-")
    a = ap.parse_args()
    g = Gen(a.seed)
    out = sys.stdout if a.output == "-" else open(a.output, "w", encoding="utf-8")
    for n in range(a.records):
        rec = g.clean_line() if n % 6 == 0 else g.mixed_line()
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
