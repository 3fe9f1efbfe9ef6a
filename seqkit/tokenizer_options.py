"""The tokenizer options a config gives, checked without the tokenizers library: a config is read
(``seqkit config check``, ``--help``) long before a tokenizer is trained, and a bad option must
fail there, naming its key, rather than after the data are read. ``seqkit.tokenizer`` runs the
same checks when it trains, and adds those that need the normaliser."""

from __future__ import annotations

from collections.abc import Sequence

from seqkit.errors import ConfigError

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0-3 (seqkit.interfaces)
KINDS: tuple[str, ...] = ("char", "word", "bpe")
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{byte:02X}>" for byte in range(256))


def check_options(kind: str, vocab_size: int | None, user_tokens: Sequence[str] = (),
                  byte_fallback: bool = False) -> None:
    """A ConfigError whose ``key`` names the option (``user_tokens[2]``, ``vocab_size``) for an
    unknown kind, byte_fallback with a tokenizer other than bpe, a user token that is empty,
    reserved or given twice, and a vocab_size without room for the special, byte and user tokens."""
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}",
                          key="tokenizer")
    if byte_fallback and kind != "bpe":
        raise ConfigError(f"only for the bpe tokenizer, not {kind}", key="byte_fallback")
    reserved = {*SPECIAL_TOKENS, *(BYTE_TOKENS if byte_fallback else ())}
    for i, token in enumerate(user_tokens):
        key = f"user_tokens[{i}]"
        if not isinstance(token, str) or not token:
            raise ConfigError(f"empty: a user token must be a non-empty string, got {token!r}", key=key)
        if token in reserved:
            kind_of = "special" if token in SPECIAL_TOKENS else "byte"
            raise ConfigError(f"{token!r} is a {kind_of} token", key=key)
        if token in user_tokens[:i]:
            first = list(user_tokens).index(token)
            raise ConfigError(f"{token!r} appears twice, first as user_tokens[{first}]", key=key)
    parts = [(len(SPECIAL_TOKENS), "special tokens"),
             (len(BYTE_TOKENS) * byte_fallback, "byte tokens (byte_fallback)"),
             (len(user_tokens), "user tokens")]
    parts = [(count, what) for count, what in parts if count]
    need = sum(count for count, _ in parts)
    if vocab_size is not None and vocab_size <= need:
        terms = " + ".join(f"{count} {what}" for count, what in parts)
        total = f" = {need}" if len(parts) > 1 else ""
        raise ConfigError(f"must exceed the {terms}{total}, got {vocab_size}", key="vocab_size")
