"""The survival convention at the boundary: conversions and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from survpgc.errors import (
    EmptyInputError,
    InputError,
    InvalidEventError,
    InvalidRiskError,
    InvalidTimeError,
    LengthMismatchError,
    NoEventError,
    SurvpgcError,
)
from survpgc.survival import check_risk, check_survival, event_from_censorship, lifelines_score_from_risk
from survpgc.survival.convention import to_structured


@pytest.mark.parametrize(
    "make",
    [
        lambda t, e: (list(t), list(e)),
        lambda t, e: (np.asarray(t), np.asarray(e)),
        lambda t, e: (pd.Series(t), pd.Series(e)),
        lambda t, e: (torch.tensor(t), torch.tensor(e)),
        lambda t, e: (np.asarray(t)[:, None], np.asarray(e, dtype=float)),
        lambda t, e: (np.asarray(t, dtype=np.float32), np.asarray(e, dtype=np.int8)),
        lambda t, e: (pd.Series(t).astype(object), pd.Series(e).astype(object)),
    ],
)
def test_check_survival_accepts_common_containers(make):
    t, e = [3.5, 12.0, 1.25], [1, 0, 1]
    out = check_survival(*make(t, e))
    assert out.time.dtype == np.float64 and out.event.dtype == bool
    np.testing.assert_allclose(out.time, t)
    np.testing.assert_array_equal(out.event, [True, False, True])


def test_check_survival_does_not_alias_input():
    t = np.array([1.0, 2.0])
    e = np.array([True, False])
    out = check_survival(t, e)
    out.time[0] = 99
    out.event[0] = False
    assert t[0] == 1.0 and e[0]


@pytest.mark.parametrize(
    ("time", "event", "cls", "match"),
    [
        ([1.0, 2.0], [1], LengthMismatchError, "2 cases but `event` has 1"),
        ([1.0, np.nan], [1, 0], InvalidTimeError, r"NaN/inf.*\[1\]"),
        ([1.0, np.inf], [1, 0], InvalidTimeError, "NaN/inf"),
        ([1.0, 0.0], [1, 0], InvalidTimeError, r"non-positive.*\[1\]=0.0"),
        ([-3.0, 2.0], [1, 0], InvalidTimeError, "non-positive"),
        ([1.0, 2.0], [1, 2], InvalidEventError, r"other than 0/1.*\[1\]=2"),
        ([1.0, 2.0], [0.5, 1], InvalidEventError, "other than 0/1"),
        ([1.0, 2.0], [1, np.nan], InvalidEventError, "other than 0/1"),
        ([1.0, 2.0], ["dead", "alive"], InvalidEventError, "dtype"),
        ([1.0, 2.0], [None, 1], InvalidEventError, "non-numeric"),
        ([], [], EmptyInputError, "`time` is empty"),
        (["a", "b"], [1, 0], InputError, "non-numeric"),
        (np.ones((2, 2)), [1, 0], InputError, "1-D"),
        (3.0, [1], InputError, "scalar"),
    ],
)
def test_check_survival_errors(time, event, cls, match):
    with pytest.raises(cls, match=match):
        check_survival(time, event)


def test_errors_are_survpgc_errors_and_value_errors():
    with pytest.raises(SurvpgcError):
        check_survival([0.0], [1])
    with pytest.raises(ValueError):
        check_survival([0.0], [1])


def test_require_event():
    with pytest.raises(NoEventError, match="all censored"):
        check_survival([1.0, 2.0], [0, 0], require_event=True)
    check_survival([1.0, 2.0], [0, 0])  # fine without the requirement


def test_custom_names_in_messages():
    with pytest.raises(InvalidTimeError, match="`train_time`"):
        check_survival([0.0], [1], time_name="train_time")


def test_censorship_conversion_is_the_inverse():
    np.testing.assert_array_equal(event_from_censorship([1, 0, 0, 1]), [False, True, True, False])
    np.testing.assert_array_equal(event_from_censorship(pd.Series([1.0, 0.0])), [False, True])
    with pytest.raises(InvalidEventError, match="censorship"):
        event_from_censorship([0, 3])


def test_check_risk():
    np.testing.assert_allclose(check_risk([1, 2], 2), [1.0, 2.0])
    with pytest.raises(InvalidRiskError, match="diverge"):
        check_risk([1.0, np.nan])
    with pytest.raises(LengthMismatchError, match="3 cases"):
        check_risk([1.0, 2.0], 3)


def test_lifelines_orientation_and_structured():
    np.testing.assert_allclose(lifelines_score_from_risk(np.array([1.0, -2.0])), [-1.0, 2.0])
    s = to_structured(np.array([1.0, 2.0]), np.array([True, False]))
    assert s.dtype.names == ("event", "time")
    assert s["event"].tolist() == [True, False]
