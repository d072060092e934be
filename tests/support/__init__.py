"""What the tests share, in one place (``pythonpath = ["tests"]`` in pyproject.toml makes ``support`` importable).

- ``models``: tiny random-weight models from transformers configs (every architecture), and the tokenized Llama
  that signed deliveries are built from;
- ``cli``: ``run_cli``, one way to run ``uc`` or ``attest`` in process through the real error plumbing;
- ``delivery``: compress, sign and check a tiny delivery; the session fixtures in tests/conftest.py build one
  signed delivery per run and hand each test that tampers with it a private copy;
- ``statements``: a valid statement and predicate without a pack (attestation format tests, golden files);
- ``report_samples``: hand-built check results and a sample bundle (report tests);
- ``fake_sigstore``: a local stand-in CA, Rekor and TSA for keyless bundles;
- ``pack_edit``: rewrite a pack file and keep the manifest consistent with it;
- ``reference_codec``: the codec re-implemented in numpy, which the real one must match bit for bit;
- ``calibration``: a small calibration text and fast compressor options;
- ``paths``: the repository and tests folders, and the environment a child Python needs to import ``support``.
"""
