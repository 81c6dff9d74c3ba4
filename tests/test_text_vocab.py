from collections import Counter

from asr_finetune.data.text import TextNormalizer, chars_to_ignore_pattern, infer_case
from asr_finetune.data.vocab import build_vocab, load_vocab, missing_characters, save_vocab

RECIPE_CHARS = [",", "?", ".", "!", "-", ";", ":", '"', "“", "%", "‘", "”", "�"]


def test_chars_to_ignore_removes_exactly_those_characters() -> None:
    normalize = TextNormalizer(RECIPE_CHARS, case="keep")
    # The reference joins "!-;" into a range that also deletes digits, apostrophes, '(' ')' '/' '&' '#'.
    assert normalize("It's 1990 (A/B) & #2!-; ok?") == "It's 1990 (A/B) & #2 ok"


def test_chars_given_as_one_string_mean_the_same_characters() -> None:
    assert chars_to_ignore_pattern([",?.!-;"]).pattern == chars_to_ignore_pattern(list(",?.!-;")).pattern


def test_regex_metacharacters_are_literal() -> None:
    normalize = TextNormalizer(["]", "^", "\\", "["], case="keep")
    assert normalize("a]b^c\\d[e") == "abcde"


def test_case_and_spaces() -> None:
    assert TextNormalizer(case="lower")("  Hello   World ") == "hello world"
    assert TextNormalizer(case="upper")("hello world") == "HELLO WORLD"
    assert TextNormalizer(case="keep")("Hello") == "Hello"


def test_case_convention_of_a_vocab() -> None:
    assert infer_case(["A", "B", "|", "'", "[PAD]"]) == "upper"
    assert infer_case(["a", "b", "|", "[UNK]"]) == "lower"
    assert infer_case(["a", "B"]) == "keep"


def test_vocab_is_sorted_deterministic_with_specials_last() -> None:
    vocab = build_vocab(["ba ab", "c"])
    assert list(vocab) == ["a", "b", "c", "|", "[UNK]", "[PAD]"]
    assert vocab == build_vocab(["c", "ab ba"])


def test_vocab_round_trips(tmp_path) -> None:
    vocab = build_vocab(["héllo wörld"])
    save_vocab(vocab, tmp_path / "vocab.json")
    assert load_vocab(tmp_path / "vocab.json") == vocab


def test_missing_characters_are_counted() -> None:
    vocab = build_vocab(["abc"])
    assert missing_characters(["ab d", "dé"], vocab) == Counter({"d": 2, "é": 1})


def test_phonemes_with_espeak() -> None:
    phonemes = TextNormalizer(case="lower", phoneme_language="en-us")("One two")
    words = phonemes.split(" ")
    assert len(words) == 2
    assert words[1].startswith("t") and any(ord(char) > 127 for char in phonemes)


def test_a_brought_tokenizer_sets_the_case(tmp_path) -> None:
    from asr_finetune.tasks.ctc import load_vocab_tokenizer, normalizer_for

    save_vocab(build_vocab(["ONE TWO"]), tmp_path / "vocab.json")
    upper = load_vocab_tokenizer(tmp_path, unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")
    assert normalizer_for(upper, None, do_lower_case=True, phoneme_language=None)("One two") == "ONE TWO"
    assert normalizer_for(None, None, do_lower_case=True, phoneme_language=None)("One two") == "one two"
    assert normalizer_for(None, None, do_lower_case=False, phoneme_language=None)("One two") == "One two"
