"""uc_attest's implementation. Private: import from ``uc_attest`` (its ``__all__``), never from here.

Everything below this package may be renamed, moved or removed in any release; the public API in
``uc_attest/__init__.py`` and the ``uc`` / ``attest`` commands are what stays.
"""
