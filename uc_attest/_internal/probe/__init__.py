"""``attest probe``: a live OpenAI-compatible endpoint's log-probabilities on the signed evaluation windows.

``client`` (HTTP, bounded, standard library only), ``api`` (the two
prompt-log-probability flavours: request shapes and strict response parsing),
``judge`` (NLLs against the signed ones under the policy's ``[probe]``
tolerances), ``run`` (the attestation checks of ``attest check`` up to the
tokens, then the probe, into :class:`~uc_attest._internal.check.results.Results`), and
``serve_reference`` (a small reference/test server over transformers, for
the tests, the demo and trying the flow; not a production server).
"""
