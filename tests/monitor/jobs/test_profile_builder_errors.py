"""``reference build`` with a selection that matches nothing: one line naming what the file holds."""

from __future__ import annotations

import pytest

from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.ingest.reference import ProfileError
from monitor.jobs.profile_builder import ProfileOptions, build_profile


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "e.jsonl"
    write_events(path, [*generate_events(300, seed=1), *generate_events(300, seed=2, model="toxicity", version="3")])
    return path


@pytest.mark.parametrize(("options", "expected"), [
    # a mistyped model: the models of the file, as `history` lists the stored ones
    (ProfileOptions(model="sentimnet"),
     "no valid events for model 'sentimnet' (read 600 lines, 0 invalid); models in the file: sentiment, toxicity"),
    # a known model, a version it does not have: that model's versions
    (ProfileOptions(model="toxicity", versions=("1",)),
     "no valid events for model 'toxicity' version 1 (read 600 lines, 0 invalid); versions of 'toxicity' in the "
     "file: 3"),
])  # fmt: skip
def test_an_empty_selection_names_what_the_file_holds(events, options, expected):
    with pytest.raises(ProfileError) as err:
        build_profile(str(events), options)
    assert str(err.value) == f"{events}: {expected}"


def test_a_file_without_valid_events_says_so(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"not": "an event"}\n')
    with pytest.raises(ProfileError, match=r"no valid events \(read 1 lines, 1 invalid\)$"):
        build_profile(str(path))
