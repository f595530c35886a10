"""Fixtures of the Kafka sidecar tests."""

import pytest

from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    d = tmp_path_factory.mktemp("profile")
    write_events(d / "ref.jsonl", generate_events(3000, seed=99, rate_per_s=20))
    p, _ = build_profile(str(d / "ref.jsonl"))
    save_profile(p, d / "profile.json")
    return d / "profile.json"


@pytest.fixture(scope="module")
def encoder_profile(tmp_path_factory):
    """The devkit's tiny ONNX encoder and a profile built with it: (profile path, the config's [tokenizer] and
    [embedding] tables), for the daemon tests with embedding drift from the encoder nlpmon runs."""
    from monitor.devkit.synth.encoder import build_tiny_encoder
    from monitor.ingest.tokenizer import TokenizerFeaturizer
    from monitor.onnx.encoder import OnnxEncoder

    d = tmp_path_factory.mktemp("encoder_profile")
    built = build_tiny_encoder(d / "encoder", seed=0, max_length=64)
    write_events(d / "ref.jsonl", generate_events(3000, seed=99, rate_per_s=20))
    encoder = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output, provider="cpu",
                          max_length=64, intra_op_threads=1)
    p, _ = build_profile(str(d / "ref.jsonl"), tokenizer=TokenizerFeaturizer(built.tokenizer_dir, max_length=64),
                         encoder=encoder)
    save_profile(p, d / "profile.json")
    extra = (f'[tokenizer]\npath = "{built.tokenizer_dir}"\nmax_length = 64\n'
             f'[embedding]\nmodel = "{built.model_path}"\noutput = "{built.pooled_output}"\nprovider = "cpu"\n'
             f'sample_size = 64\npermutations = 200\n')
    return d / "profile.json", extra
