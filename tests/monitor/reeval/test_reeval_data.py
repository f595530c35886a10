"""monitor.reeval.data: jsonl/csv/tsv held-out sets, label maps, and an error that names file and line."""

from __future__ import annotations

import json

import pytest

from monitor.reeval.data import label_space, load_labelled_data, parse_label_map
from monitor.reeval.errors import DataError


def _write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("neg=0,pos=1", {"neg": 0, "pos": 1}),
        (" negative = 0 , positive = 1 ", {"negative": 0, "positive": 1}),
        ("bad=0,awful=0,good=1", {"bad": 0, "awful": 0, "good": 1}),
    ],
)
def test_inline_label_map(spec, expected):
    assert parse_label_map(spec) == expected


def test_label_map_from_json_object_and_list(tmp_path):
    assert parse_label_map(str(_write(tmp_path / "m.json", '{"neg": 0, "pos": 1}'))) == {"neg": 0, "pos": 1}
    assert parse_label_map(str(_write(tmp_path / "l.json", '["neg", "pos"]'))) == {"neg": 0, "pos": 1}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("neg:0", "not name=index"),
        ("neg=zero", "not an integer"),
        ("neg=-1", "negative index"),
        ("neg=0,neg=1", "two indices"),
        ("missing.json", "does not exist"),
    ],
)
def test_bad_label_maps(spec, message):
    with pytest.raises(DataError, match=message):
        parse_label_map(spec)


def test_jsonl_csv_tsv_with_custom_fields(tmp_path):
    rows = [("great film, loved it", "pos"), ('said "meh"\tthen left', "neg")]
    jl = _write(tmp_path / "d.jsonl", "".join(json.dumps({"review": t, "y": y}) + "\n\n" for t, y in rows))
    csv = _write(tmp_path / "d.csv", 'review,y\n"great film, loved it",pos\n"said ""meh""\tthen left",neg\n')
    tsv = _write(tmp_path / "d.tsv", 'y\treview\npos\tgreat film, loved it\nneg\t"said ""meh""\tthen left"\n')
    for path in (jl, csv, tsv):
        d = load_labelled_data(path, num_labels=2, text_field="review", label_field="y", label_map={"neg": 0, "pos": 1})
        assert d.texts == tuple(t for t, _ in rows), path
        assert d.labels.tolist() == [1, 0]
        assert d.space.names == ("neg", "pos") and d.space.source == "label-map"
    assert load_labelled_data(
        jl, num_labels=2, text_field="review", label_field="y", label_map={"neg": 0, "pos": 1}
    ).lines == (1, 3)


def test_labels_from_config_json_accept_names_and_indices(tmp_path):
    _write(tmp_path / "config.json", json.dumps({"id2label": {"0": "negative", "1": "positive"}}))
    data = _write(
        tmp_path / "d.jsonl",
        '{"text": "a", "label": "positive"}\n{"text": "b", "label": 0}\n{"text": "c", "label": "1"}\n',
    )
    d = load_labelled_data(data, num_labels=2, config_dirs=(tmp_path,))
    assert d.labels.tolist() == [1, 0, 1]
    assert d.space.names == ("negative", "positive") and d.space.source == "config.json"


def test_integer_labels_without_any_map(tmp_path):
    data = _write(tmp_path / "d.csv", "text,label\na,0\nb,2\n")
    d = load_labelled_data(data, num_labels=3)
    assert d.labels.tolist() == [0, 2] and d.space.names == ("0", "1", "2")
    with pytest.raises(DataError, match=r"d\.csv:3: label 2 is not a class of this model \(it has 2 outputs\)"):
        load_labelled_data(data, num_labels=2)


def test_label_map_index_beyond_the_model(tmp_path):
    with pytest.raises(DataError, match="'neutral' index 2, but the model has only 2 outputs"):
        label_space(2, label_map={"neg": 0, "pos": 1, "neutral": 2})


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        # label not in map: names the label and the line
        (
            "d.jsonl",
            '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neutral"}\n',
            dict(label_map={"neg": 0, "pos": 1}),
            r"d\.jsonl:2: label 'neutral' is not in the label map \(known: neg, pos\)",
        ),
        (
            "d.jsonl",
            '{"text": "a", "label": "pos"}\n',
            {},
            r"d\.jsonl:1: label 'pos' is not a class index and no label map is known",
        ),
        # missing fields
        (
            "d.jsonl",
            '{"text": "a", "label": 0}\n{"body": "b", "label": 1}\n',
            {},
            r"d\.jsonl:2: no field 'text' \(fields: 'body', 'label'\); set --text-field",
        ),
        (
            "d.csv",
            "body,label\nx,0\n",
            {},
            r"no column 'text' in the header \(columns: 'body', 'label'\); set --text-field",
        ),
        ("d.tsv", "text\tlabel\nonly-one-column\n", {}, r"d\.tsv:2: the row has fewer columns than the header"),
        ("d.jsonl", '{"text": null, "label": 0}\n', {}, r"d\.jsonl:1: field 'text' must be a string, got null"),
        ("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "lab\n', {}, r"d\.jsonl:2: not valid JSON"),
        # empty data sets
        ("d.jsonl", "\n\n", {}, "holds no records; the data set is empty"),
        ("d.csv", "text,label\n", {}, "holds no records; the data set is empty"),
        ("d.csv", "", {}, "holds no records; the data set is empty"),
        # wrong suffix
        ("d.txt", "text,label\n", {}, r"cannot tell the format of .*d\.txt"),
    ],
)
def test_bad_data_is_a_clear_error(tmp_path, name, content, kwargs, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=message):
        load_labelled_data(path, num_labels=2, **kwargs)


def test_unreadable_csv(tmp_path):
    binary = _write(tmp_path / "bin.csv", b"text,label\n\xff\xfe\x00garbage\x89PNG\n", mode="wb")
    with pytest.raises(DataError, match=r"bin\.csv is not UTF-8 text"):
        load_labelled_data(binary, num_labels=2)
    nul = _write(tmp_path / "nul.csv", b"text,label\nab\x00c,0\n", mode="wb")
    with pytest.raises(DataError, match=r"nul\.csv:2: the text holds a NUL character"):
        load_labelled_data(nul, num_labels=2)
    quotes = _write(tmp_path / "quotes.csv", 'text,label\n"fine",0\n"broken"quote,1\n')
    with pytest.raises(DataError, match=r"quotes\.csv:3: unreadable CSV: .*expected after.*inside doubled"):
        load_labelled_data(quotes, num_labels=2)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nope\.jsonl does not exist"):
        load_labelled_data(tmp_path / "nope.jsonl", num_labels=2)
    with pytest.raises(DataError, match="is not a regular file"):
        load_labelled_data(tmp_path, num_labels=2)
