"""Which API provider a span talks to: a host table shared by the app's httpx hooks and the collector.

:data:`BUILTIN_PROVIDERS` covers the major LLM and SaaS API hosts. Each entry gives the provider
``name`` (the ``provider`` label of every spansignals metric), its ``dialect`` (which response
body and rate-limit header formats it speaks: ``openai``, ``anthropic``, ``gemini``, ``github``,
``ietf`` or ``generic``) and, for LLM APIs, the ``gen_ai.provider.name`` value (the semantic
conventions' well-known value where one exists, e.g. ``gcp.gemini``, ``azure.ai.openai``; the
provider name otherwise, which the conventions allow).

Host patterns are exact (``api.openai.com``) or wildcards (``*.openai.azure.com``, which matches
any subdomain but not the bare domain; ``bedrock-runtime.*.amazonaws.com``). The ``providers:``
config block extends the table; an entry there wins over a built-in for the same host.

:meth:`ProviderTable.resolve` is on the per-request path: results (misses included) are cached per
host in a bounded dict, so a lookup costs one dict access after the first.
:func:`resolve_view` resolves a finished span from any source, in this order: the
``spansignals.provider`` attribute our hooks set, ``gen_ai.provider.name`` (or the older
``gen_ai.system``), then the host in ``server.address`` / ``net.peer.name`` / ``url.full`` /
``http.url``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ATTR_GENAI_PROVIDER",
    "ATTR_PROVIDER",
    "BUILTIN_PROVIDERS",
    "DIALECTS",
    "LLM_DIALECTS",
    "ProviderInfo",
    "ProviderTable",
    "default_table",
    "host_of_url",
    "resolve_view",
]

ATTR_PROVIDER = "spansignals.provider"
"""Span attribute our httpx hooks set to the provider name."""
ATTR_GENAI_PROVIDER = "gen_ai.provider.name"
"""The GenAI semantic-convention attribute, set for LLM providers."""

DIALECTS = frozenset({"openai", "anthropic", "gemini", "github", "ietf", "generic"})
LLM_DIALECTS = frozenset({"openai", "anthropic", "gemini"})

_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What a host belongs to.

    ``genai_name`` is the ``gen_ai.provider.name`` value, ``None`` for non-LLM APIs.
    """

    name: str
    dialect: str = "generic"
    genai_name: str | None = None

    @property
    def is_llm(self) -> bool:
        """Whether this is an LLM API (it has a ``gen_ai.provider.name``)."""
        return self.genai_name is not None


def _llm(name: str, dialect: str, genai: str | None = None) -> ProviderInfo:
    return ProviderInfo(name, dialect, genai or name)


def _api(name: str, dialect: str = "generic") -> ProviderInfo:
    return ProviderInfo(name, dialect, None)


_OPENAI = _llm("openai", "openai")
_ANTHROPIC = _llm("anthropic", "anthropic")
_GEMINI = _llm("gemini", "gemini", "gcp.gemini")
_VERTEX = _llm("vertex_ai", "gemini", "gcp.vertex_ai")
_AZURE_OPENAI = _llm("azure_openai", "openai", "azure.ai.openai")
_AZURE_INFERENCE = _llm("azure_ai_inference", "openai", "azure.ai.inference")
_BEDROCK = _llm("bedrock", "generic", "aws.bedrock")
_HUGGINGFACE = _llm("huggingface", "openai")

BUILTIN_PROVIDERS: tuple[tuple[str, ProviderInfo], ...] = (
    # LLM APIs. Dialect "openai" means the OpenAI-compatible body and x-ratelimit-* headers.
    ("api.openai.com", _OPENAI),
    ("api.anthropic.com", _ANTHROPIC),
    ("generativelanguage.googleapis.com", _GEMINI),
    ("aiplatform.googleapis.com", _VERTEX),
    ("*-aiplatform.googleapis.com", _VERTEX),
    ("*.openai.azure.com", _AZURE_OPENAI),
    ("*.services.ai.azure.com", _AZURE_INFERENCE),
    ("*.inference.ai.azure.com", _AZURE_INFERENCE),
    ("models.inference.ai.azure.com", _AZURE_INFERENCE),
    ("bedrock-runtime.*.amazonaws.com", _BEDROCK),
    ("api.mistral.ai", _llm("mistral_ai", "openai")),
    ("api.groq.com", _llm("groq", "openai")),
    ("api.deepseek.com", _llm("deepseek", "openai")),
    ("api.x.ai", _llm("x_ai", "openai")),
    ("api.cohere.com", _llm("cohere", "generic")),
    ("api.cohere.ai", _llm("cohere", "generic")),
    ("api.perplexity.ai", _llm("perplexity", "openai")),
    ("api.together.xyz", _llm("together", "openai")),
    ("api.together.ai", _llm("together", "openai")),
    ("openrouter.ai", _llm("openrouter", "openai")),
    ("api.fireworks.ai", _llm("fireworks", "openai")),
    ("api.cerebras.ai", _llm("cerebras", "openai")),
    ("api.deepinfra.com", _llm("deepinfra", "openai")),
    ("router.huggingface.co", _HUGGINGFACE),
    ("api-inference.huggingface.co", _HUGGINGFACE),
    ("api.replicate.com", _llm("replicate", "generic")),
    ("api.voyageai.com", _llm("voyage", "generic")),
    ("api.ai21.com", _llm("ai21", "openai")),
    ("*.api.watsonx.ai", _llm("watsonx", "generic", "ibm.watsonx.ai")),
    ("api.moonshot.ai", _llm("moonshot", "openai")),
    ("dashscope.aliyuncs.com", _llm("dashscope", "openai")),
    ("dashscope-intl.aliyuncs.com", _llm("dashscope", "openai")),
    # SaaS APIs.
    ("api.github.com", _api("github", "github")),
    ("uploads.github.com", _api("github", "github")),
    ("gitlab.com", _api("gitlab", "ietf")),
    ("api.stripe.com", _api("stripe")),
    ("files.stripe.com", _api("stripe")),
    ("api.twilio.com", _api("twilio")),
    ("*.twilio.com", _api("twilio")),
    ("api.sendgrid.com", _api("sendgrid")),
    ("slack.com", _api("slack")),
    ("*.slack.com", _api("slack")),
    ("api.mailgun.net", _api("mailgun")),
    ("api.eu.mailgun.net", _api("mailgun")),
    ("api.postmarkapp.com", _api("postmark")),
    ("*.atlassian.net", _api("atlassian")),
    ("api.notion.com", _api("notion")),
    ("api.hubapi.com", _api("hubspot")),
    ("*.my.salesforce.com", _api("salesforce")),
    ("*.myshopify.com", _api("shopify")),
    ("api.pagerduty.com", _api("pagerduty")),
    ("events.pagerduty.com", _api("pagerduty")),
    ("discord.com", _api("discord")),
    ("api.telegram.org", _api("telegram")),
    ("api.cloudflare.com", _api("cloudflare")),
    ("api.linear.app", _api("linear")),
    ("api.resend.com", _api("resend")),
)


def _normalize_host(host: str) -> str:
    """Lower-case, without port, trailing dot or IPv6 brackets."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    # "*" matches one or more characters of a single DNS label ("*.x.com" needs a subdomain).
    parts = (re.escape(p) for p in pattern.split("*"))
    return re.compile("[^.]+".join(parts) + r"\Z")


def host_of_url(url: str) -> str | None:
    """The host of an absolute URL (no port, lower-case), or ``None``. Never raises."""
    try:
        start = url.find("://")
        if start < 0:
            return None
        rest = url[start + 3 :]
        for sep in "/?#":
            cut = rest.find(sep)
            if cut >= 0:
                rest = rest[:cut]
        rest = rest.rpartition("@")[2]
        host = _normalize_host(rest)
        return host or None
    except Exception:
        return None


class ProviderTable:
    """Host → :class:`ProviderInfo`, with wildcard patterns and a bounded per-host cache.

    ``entries`` are ``(host_pattern, info)`` pairs; an earlier entry wins over a later one for
    the same host. Build the usual table with :meth:`from_config`.
    """

    def __init__(self, entries: Iterable[tuple[str, ProviderInfo]] = BUILTIN_PROVIDERS) -> None:
        self._exact: dict[str, ProviderInfo] = {}
        self._wildcards: list[tuple[re.Pattern[str], ProviderInfo]] = []
        self._by_name: dict[str, ProviderInfo] = {}
        self._by_genai: dict[str, ProviderInfo] = {}
        for pattern, info in entries:
            if info.dialect not in DIALECTS:
                raise ValueError(
                    f"provider {info.name!r}: dialect must be one of {sorted(DIALECTS)}, got {info.dialect!r}"
                )
            host = _normalize_host(pattern)
            if not host:
                raise ValueError(f"provider {info.name!r}: empty host pattern")
            if "*" in host:
                self._wildcards.append((_compile_pattern(host), info))
            else:
                self._exact.setdefault(host, info)
            self._by_name.setdefault(info.name, info)
            if info.genai_name is not None:
                self._by_genai.setdefault(info.genai_name, info)
        self._cache: dict[str, ProviderInfo | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, providers: Sequence[Any] = (), *, builtins: bool = True) -> ProviderTable:
        """The built-in table extended (and overridden per host) by ``providers:`` config entries.

        Each entry needs ``name``, ``hosts`` and ``dialect``, and may have ``genai`` (whether it
        is an LLM API; default: true for the openai/anthropic/gemini dialects). A config entry
        named like a built-in LLM provider keeps the built-in ``gen_ai.provider.name``.
        """
        builtin_by_name = {info.name: info for _, info in BUILTIN_PROVIDERS}
        entries: list[tuple[str, ProviderInfo]] = []
        for p in providers:
            dialect = getattr(p, "dialect", "generic") or "generic"
            genai = getattr(p, "genai", None)
            if genai is None:
                genai = dialect in LLM_DIALECTS
            known = builtin_by_name.get(p.name)
            genai_name = None
            if genai:
                genai_name = known.genai_name if known is not None and known.genai_name else p.name
            info = ProviderInfo(p.name, dialect, genai_name)
            entries.extend((host, info) for host in p.hosts)
        if builtins:
            entries.extend(BUILTIN_PROVIDERS)
        return cls(entries)

    def resolve(self, host: str | None) -> ProviderInfo | None:
        """The provider of ``host`` (any case, port allowed), or ``None``. Never raises."""
        if not host:
            return None
        cached = self._cache.get(host, _MISS)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        try:
            result = self._lookup(_normalize_host(host))
        except Exception:
            result = None
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()  # hosts are few in practice; a flood of distinct ones just resets
            self._cache[host] = result
        return result

    def _lookup(self, host: str) -> ProviderInfo | None:
        info = self._exact.get(host)
        if info is not None:
            return info
        for pattern, winfo in self._wildcards:
            if pattern.match(host):
                return winfo
        return None

    def by_name(self, name: str) -> ProviderInfo | None:
        """The provider called ``name`` in this table, or ``None``."""
        return self._by_name.get(name)

    def by_genai_name(self, genai_name: str) -> ProviderInfo | None:
        """The provider whose ``gen_ai.provider.name`` is ``genai_name``, or ``None``."""
        return self._by_genai.get(genai_name)


_MISS = object()


def resolve_view(view: Any, table: ProviderTable | None = None) -> ProviderInfo | None:
    """The provider of a finished span (a :class:`~.view.SpanView` or anything with ``attributes``).

    Uses ``spansignals.provider``, then ``gen_ai.provider.name`` / ``gen_ai.system``, then the
    request host. An unknown name in the first two still yields a provider (dialect ``generic``),
    so spans from other instrumentations are attributed. Never raises.
    """
    try:
        table = table or default_table()
        attrs: Mapping[str, Any] = view.attributes
        # No emptiness test first: on an OTLP view it is a Python-level __len__ (~0.15 µs), and an
        # empty mapping answers every get below with None anyway.
        name = attrs.get(ATTR_PROVIDER)
        if isinstance(name, str) and name:
            info = table.by_name(name)
            if info is None:
                genai = attrs.get(ATTR_GENAI_PROVIDER)
                info = ProviderInfo(name, "generic", genai if isinstance(genai, str) and genai else None)
            return info
        get = attrs.get  # keys unrolled: this runs for most spans (SLO provider selectors, cost)
        genai = get(ATTR_GENAI_PROVIDER)
        if genai is None or not isinstance(genai, str) or not genai:
            genai = get("gen_ai.system")
        if genai is not None and isinstance(genai, str) and genai:
            return table.by_genai_name(genai) or table.by_name(genai) or ProviderInfo(genai, "generic", genai)
        resolve = table.resolve
        host = get("server.address")
        if host is not None and isinstance(host, str) and host:
            info = resolve(host)
            if info is not None:
                return info
        host = get("net.peer.name")
        if host is not None and isinstance(host, str) and host:
            info = resolve(host)
            if info is not None:
                return info
        host = get("http.host")
        if host is not None and isinstance(host, str) and host:
            info = resolve(host)
            if info is not None:
                return info
        url = get("url.full")
        if url is None or not isinstance(url, str) or not url:
            url = get("http.url")
        if url is not None and isinstance(url, str) and url:
            return resolve(host_of_url(url))
        return None
    except Exception:
        return None


_DEFAULT: ProviderTable | None = None


def default_table() -> ProviderTable:
    """The built-in table alone (shared, built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ProviderTable()
    return _DEFAULT
