"""Converters from other monitors' configurations to upwatch.yaml (`upwatch import ...`).

Ground-layer code: they turn parsed YAML into plain data and never import `upwatch.config`;
what they emit is checked against the real loader by the tests and by `upwatch check-config`.
"""
