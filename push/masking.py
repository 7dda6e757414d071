"""The push API's masking rules: those of upwatch.masking, shared with the endpoint catalog."""

from upwatch.masking import MASK, SECRET_WORDS, SENSITIVE_HEADERS, Masking, masking, normalized, tokens, word

__all__ = ["MASK", "SECRET_WORDS", "SENSITIVE_HEADERS", "Masking", "masking", "normalized", "tokens", "word"]
