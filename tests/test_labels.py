import pytest

from ser_lightning.data.label_sets import check_label_spec, resolve_label_names
from ser_lightning.labels import (
    EMOTION_TO_RAVDESS_CODE,
    EMOTIONS,
    KNOWN_EMOTIONS,
    RAVDESS_EMOTION_CODES,
    emotion_index,
)
from ser_lightning.utils.errors import InvalidSetting


def test_order_matches_ravdess_codes():
    assert EMOTIONS[0] == "neutral" and EMOTIONS[-1] == "surprised" and len(EMOTIONS) == 8
    assert RAVDESS_EMOTION_CODES["01"] == "neutral"
    assert RAVDESS_EMOTION_CODES["05"] == "angry"
    assert RAVDESS_EMOTION_CODES["08"] == "surprised"
    for index, name in enumerate(EMOTIONS):
        assert emotion_index(name) == index
        assert int(EMOTION_TO_RAVDESS_CODE[name]) == index + 1


def test_unknown_emotion_names_the_valid_ones():
    import pytest

    with pytest.raises(KeyError, match="neutral, calm"):
        emotion_index("bored")


def test_other_corpora_emotions_follow_ravdess_eight_in_one_order():
    assert KNOWN_EMOTIONS[:8] == EMOTIONS and len(set(KNOWN_EMOTIONS)) == len(KNOWN_EMOTIONS) == 12
    assert [emotion_index(e) for e in ("neutral", "surprised", "contempt", "frustrated")] == [0, 7, 8, 11]
    # `all` stays RAVDESS's eight; a list may name any known emotion, and keeps the one order
    assert resolve_label_names(check_label_spec("all"), ["boredom"]) == EMOTIONS
    assert check_label_spec(["frustrated", "neutral", "boredom"]) == ("neutral", "boredom", "frustrated")
    assert resolve_label_names("corpus", ["sad", "excited", "angry", "contempt"]) == (
        "sad",
        "angry",
        "contempt",
        "excited",
    )
    with pytest.raises(InvalidSetting, match="unknown: \\['bored'\\]"):
        check_label_spec(["neutral", "bored"])
