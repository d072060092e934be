"""The out-of-domain evaluation texts and the calibration mix: never overlapping any evaluation text."""

from __future__ import annotations

from uc_attest._internal.evaluate import mixed_text
from uc_attest._internal.evaluate.text import default_calibration_text, default_eval_text


def test_calibration_mix_shares_no_run_of_words_with_either_evaluation_text() -> None:
    mix = mixed_text.calibration_mix_text()
    licences = mixed_text.licence_eval_text()
    assert licences, "the licence texts are missing on this machine (/usr/share/common-licenses)"
    assert "GNU GENERAL PUBLIC LICENSE" in licences
    info = mixed_text.info_eval_text()
    assert info, "the GNU info manuals are missing on this machine (/usr/share/info)"
    assert mixed_text.evaluation_texts() == [default_eval_text(), licences, info]
    forbidden = set().union(*(mixed_text.shingles(t) for t in mixed_text.evaluation_texts()))
    # paragraph by paragraph (two neighbours may meet across their boundary as they do elsewhere, as in any split of a text)
    assert not [p for p in mix.split("\n\n") if mixed_text.overlaps(p, forbidden)]
    for evaluation in mixed_text.evaluation_texts():
        paragraphs = {" ".join(p.split()) for p in evaluation.split("\n\n")}
        assert not paragraphs & {" ".join(p.split()) for p in mix.split("\n\n")}


def test_calibration_mix_is_more_than_docstrings() -> None:
    mix = mixed_text.calibration_mix_text().split("\n\n")
    docstrings = set(default_calibration_text().split("\n\n"))
    others = [p for p in mix if p not in docstrings]
    assert len(others) > 0.2 * len(mix)  # documentation prose, interleaved
    first_half = mix[: len(mix) // 2]
    assert 0.3 < sum(p in docstrings for p in first_half) / len(first_half) < 0.9


def test_evaluation_texts_are_deduplicated() -> None:
    for text in (mixed_text.licence_eval_text(), mixed_text.info_eval_text()):
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        assert len(paragraphs) == len(set(paragraphs))


def test_info_text_is_prose_without_licence_talk() -> None:
    info = mixed_text.info_eval_text()
    assert "File: " not in info and "INFO-DIR" not in info
    assert not mixed_text.NOT_PROSE.search(info)


def test_overlap_check_finds_a_quoted_run() -> None:
    forbidden = mixed_text.shingles("This program is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY")
    assert mixed_text.overlaps("As the README says: this program is distributed in the hope that it will be useful.", forbidden)
    assert not mixed_text.overlaps("An unrelated paragraph about calibration windows and tokens per batch.", forbidden)


def test_calibration_mix_has_code_from_the_calibration_split_only() -> None:
    mix = mixed_text.calibration_mix_text().split("\n\n")
    code = [p for p in mix if p.startswith(("def ", "class ", "async def "))]
    assert len(code) > 0.02 * len(mix)
    assert mixed_text.CALIBRATION_SOURCE_NAME.endswith("python-stdlib code (calibration split)")


def test_source_segments_are_those_of_the_ast_module() -> None:
    """The code units' segments, cut from lines split once, equal ast.get_source_segment's (CRLF, CR, form feed, UTF-8)."""
    import ast
    import inspect

    from uc_attest._internal.evaluate import mixed_text

    sources = [
        "def f():\r\n    return 'é'\r\n\r\nclass C:\r    x = 1\r    def g(self): pass\n",
        "def h():\n    a = 1\x0c\n    return 'ü名' + \"\"\"\n  x\n\"\"\"\nasync def k(): pass",
        inspect.getsource(ast),
        inspect.getsource(mixed_text),
    ]
    for source in sources:
        lines = mixed_text._LINE.findall(source)
        assert "".join(lines) == source
        for node in ast.parse(source).body:
            assert mixed_text._source_segment(lines, node) == (ast.get_source_segment(source, node) or "")
