from ser_lightning.labels import (
    EMOTION_TO_RAVDESS_CODE,
    EMOTIONS,
    RAVDESS_EMOTION_CODES,
    emotion_index,
)


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
