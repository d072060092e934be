"""The version of uc_attest, in a leaf module: every module that records it imports nothing else through it."""

__version__ = "0.1.0"
