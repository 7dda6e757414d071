"""Masking secrets before anything is stored or logged: header values, URL credentials and query
values, and JSON or form fields, chosen by what their names look like. Shared by the push API
(request logs, replays) and the endpoint catalog and probe results (Grafana reads both).

A name is split into lower-case tokens at every character that is not a
letter or digit and at camelCase boundaries (`X-Api-Key` -> x, api, key;
`accessToken` -> access, token; `APIKey` -> api, key). It is secret when

- some run of consecutive tokens, joined, is a secret word (`api_key` and
  `x-apikey` both contain `apikey`; `key` alone is a word too), or
- one token ends with a secret word of five or more letters, for names
  glued together in lower case (`accesstoken`, `dbpassword`, `phpsessid`).

So `keyboard`, `monkey`, `author` and `tokenizer` are kept, while
`sort_key`, `session_count` or `auth_method` are masked: a masked harmless
value costs a little debugging, a stored secret cannot be taken back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

MASK = "***"
# Matched after normalized(): case and white space do not count.
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"})
SECRET_WORDS = frozenset({
    "token", "secret", "password", "passwd", "pwd", "passphrase", "key", "apikey", "signature", "sig",
    "auth", "authorization", "session", "sessionid", "sessid", "sid", "cookie", "credential", "credentials",
    "jwt", "bearer", "otp", "csrf", "xsrf",
})
_SUFFIX_MIN = 5
_MAX_RUN = 6  # tokens joined at most: the longest configured name that can match
_CACHE_MAX = 10_000
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# A URL inside free text (an error message): up to white space, a quote or a closing bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]]+")
# An assertion's text: `json data.token == 'x'`, `[BODY].api_key == x`, `header X-Api-Key matches '^k'`.
_ASSERTION = re.compile(r"^(json |header |\[BODY\]\.?)(\S*?)(\s+\S+\s+)(.*)$", re.S)
_PATH_PART = re.compile(r"[.\[\]]+")
_PATH_PARAM = re.compile(r";([^;/?#=]+)=([^;/?#]*)")
# A body that is a form (a=1&b=2): no white space, at least one name=value.
_FORM = re.compile(r"[^\s=&]+=[^\s&]*(?:&[^\s&]*)*")
# "name": value in JSON text that does not parse (cut short by the client, say).
_JSON_PAIR = re.compile(r'"((?:[^"\\]|\\.){1,256})"(\s*:\s*)("[^"\\]*(?:\\.[^"\\]*)*"?|-?[0-9][^,}\]\s]*)')


def tokens(name: str) -> list[str]:
    """A field or header name as lower-case tokens (see the module docstring)."""
    return [t.lower() for t in _TOKEN.findall(name)]


def normalized(name: str) -> str:
    """A header name compared case- and white-space-insensitively."""
    return "".join(name.split()).lower()


def word(name: str) -> str:
    """A configured secret name as the word it matches (`X-Internal-Id` -> xinternalid)."""
    return "".join(tokens(name))


@dataclass(frozen=True)
class Masking:
    """What to mask: exact header names plus names that look secret; every method returns the value
    with secret parts replaced by ***, and the very same object when nothing needed masking."""

    headers: frozenset[str] = SENSITIVE_HEADERS
    words: frozenset[str] = SECRET_WORDS
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    _headers_seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def secret(self, name: str) -> bool:
        """Whether a field, parameter or header with this name holds a secret."""
        found = self._seen.get(name)
        if found is None:
            found = self._decide(name)
            if len(self._seen) >= _CACHE_MAX:
                self._seen.clear()
            self._seen[name] = found
        return found

    def _decide(self, name: str) -> bool:
        parts = tokens(name)
        for start in range(len(parts)):
            joined = ""
            for part in parts[start:start + _MAX_RUN]:
                joined += part
                if joined in self.words:
                    return True
        return any(part.endswith(w) for part in parts for w in self.words if len(w) >= _SUFFIX_MIN)

    def header(self, name: str) -> bool:
        """Whether a header's value is masked: a listed name (any case or spacing) or a secret-looking one."""
        found = self._headers_seen.get(name)
        if found is None:
            found = normalized(name) in self.headers or self.secret(name)
            if len(self._headers_seen) >= _CACHE_MAX:
                self._headers_seen.clear()
            self._headers_seen[name] = found
        return found

    def headers_of(self, headers: dict[str, Any] | None) -> dict[str, Any] | None:
        """Headers with the values of sensitive ones masked."""
        if not headers:
            return headers
        hidden = [k for k in headers if self.header(k)]
        if not hidden:
            return headers
        return {**headers, **dict.fromkeys(hidden, MASK)}

    def url(self, url: str | None) -> str | None:
        """A URL (or path) with its user:password@ and the values of secret query, fragment and path
        parameters (`/a;jsessionid=...`) masked."""
        if not url or ("?" not in url and "#" not in url and "@" not in url and ";" not in url):
            return url
        head, hashmark, fragment = url.partition("#")
        base, qmark, query = head.partition("?")
        base = _USERINFO.sub(r"\1" + MASK + "@", base)
        if ";" in base:
            base = _PATH_PARAM.sub(self._path_param, base)
        if "=" in fragment:
            fragment = self.form(fragment)
        return base + qmark + self.form(query) + hashmark + fragment

    def text(self, text: str | None) -> str | None:
        """Free text (an error message) with the secret parts of every URL in it masked."""
        if not text or "://" not in text:
            return text
        return _URL_IN_TEXT.sub(lambda m: self.url(m.group(0)) or "", text)

    def assertion(self, text: str) -> str:
        """An assertion's text with the value compared with a secret-looking JSON field or header masked."""
        m = _ASSERTION.match(text)
        if m is None or not m.group(4) or not self._secret_subject(m.group(1), m.group(2)):
            return text
        return m.group(1) + m.group(2) + m.group(3) + MASK

    def _secret_subject(self, kind: str, name: str) -> bool:
        if kind == "header ":
            return self.header(name)
        return any(self.secret(part) for part in _PATH_PART.split(name) if part and not part.isdigit())

    def probe_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A probe_results row with its final URL, URLs quoted in its error and what its assertions on
        secret-looking fields saw (actual value, reason, expected value) masked; changed in place."""
        row["final_url"] = self.url(row.get("final_url"))
        results = row.get("assertions")
        masked = [self._result(r) for r in results] if results else results
        if masked is not None and any(a is not b for a, b in zip(masked, results or [], strict=True)):
            row["assertions"] = masked
            if row.get("error_kind") == "assertion":  # the checks' message: "<assertion>: <reason>; ..."
                row["error"] = "; ".join(f"{r['assertion']}: {r.get('reason', '')}" for r in masked
                                         if not r["ok"])[:500]
        row["error"] = self.text(row.get("error"))
        return row

    def _result(self, result: dict[str, Any]) -> dict[str, Any]:
        text = result.get("assertion")
        if not isinstance(text, str) or self.assertion(text) is text:
            return result
        out = {**result, "assertion": self.assertion(text), "actual": MASK}
        if "reason" in out:
            out["reason"] = "the value did not match"
        return out

    def _path_param(self, match: re.Match[str]) -> str:
        name = match.group(1)
        return f";{name}={MASK}" if match.group(2) and self.secret(_unquoted(name)) else match.group(0)

    def form(self, text: str) -> str:
        """name=value&... text with the values of secret names masked (other bytes kept as sent)."""
        parts = text.split("&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if eq and value and value != MASK and self.secret(_unquoted(name)):
                parts[i] = name + "=" + MASK
                changed = True
        return "&".join(parts) if changed else text

    def json(self, value: Any) -> Any:
        """A JSON value with the values of secret-named object members masked, at any depth."""
        if isinstance(value, dict):
            out: dict[str, Any] | None = None
            for k, v in value.items():
                if _hides(v) and self.secret(k):
                    masked: Any = MASK
                elif isinstance(v, dict | list):
                    masked = self.json(v)
                else:
                    continue
                if masked is not v:
                    out = out if out is not None else dict(value)
                    out[k] = masked
            return value if out is None else out
        if isinstance(value, list):
            items = [self.json(v) if isinstance(v, dict | list) else v for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def body(self, body: Any) -> Any:
        """A body as pushed (JSON value, or text that may be JSON or a form) with its secrets masked."""
        if not isinstance(body, str):
            return self.json(body)
        start = body.lstrip()[:1]
        if start in ("{", "["):
            return self._json_text(body)
        if "=" in body and _FORM.fullmatch(body):
            return self.form(body)
        return body

    def _json_text(self, text: str) -> str:
        try:
            parsed = json.loads(text)
            masked = self.json(parsed)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to walk: go by the text
            return _JSON_PAIR.sub(self._pair, text)
        return text if masked is parsed else json.dumps(masked, ensure_ascii=False, separators=(",", ":"))

    def _pair(self, match: re.Match[str]) -> str:
        name, colon, value = match.groups()
        if value in ('""', "null") or not self.secret(name):
            return match.group(0)
        return f'"{name}"{colon}"{MASK}"'


def _unquoted(name: str) -> str:
    # Most names have nothing to decode: skip the call, which a sync of 50k endpoints makes twice each.
    return unquote_plus(name) if "%" in name or "+" in name else name


def _hides(value: Any) -> bool:
    """Whether a value can hide a secret: not null, a boolean or an empty string."""
    return value is not None and not isinstance(value, bool) and value != ""


def masking(headers: Iterable[str] = (), names: Iterable[str] = ()) -> Masking:
    """The built-in header names and secret words plus the configured ones."""
    return Masking(SENSITIVE_HEADERS | {normalized(h) for h in headers},
                   SECRET_WORDS | {w for w in (word(n) for n in names) if w})
