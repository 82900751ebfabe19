"""Round 21, twelfth mutation pass: the run's middle (one verification run, one identification run, stage 1's
landmarks and ``--on-error``, pasting a face back, the run lock). Each test closes a gap a surviving mutant showed:
an item dropped, repeated or paired with the wrong one, or a lock that names the wrong holder, with no test failing.
"""
from __future__ import annotations

import os

import pytest

from restorever.errors import RestoreverError
from restorever.pipeline.lock import RunLock, RunLockedError


def test_the_lock_file_names_its_holder_alone_after_any_earlier_run(tmp_path):
    """The lock file is opened for appending; without its truncation the second run's id was written after the
    first's (``pid 11pid 22``), and a refused run named a holder that does not exist."""
    (tmp_path / ".restorever.lock").write_text("pid 999999 left by a killed run")
    with RunLock(tmp_path):
        assert (tmp_path / ".restorever.lock").read_text() == f"pid {os.getpid()}"
        with pytest.raises(RunLockedError) as refused:
            with RunLock(tmp_path):
                pass
    assert f"{tmp_path} is being written by pid {os.getpid()}; wait for it" in str(refused.value)
    with RunLock(tmp_path):  # released, taken again: still the one holder
        assert (tmp_path / ".restorever.lock").read_text() == f"pid {os.getpid()}"


def test_an_embedding_probe_runs_only_with_the_age_bins_it_was_fitted_on(tmp_path):
    """``--age-bins`` must equal the probe's own edges: a probe's age head has one output per fitted group, so
    other edges would read its outputs as other groups. The same edges are accepted, other ones refused."""
    from restorever.attributes.groups import AgeGroups, AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
    from restorever.pipeline.identification import IdentConfig, _attribute_model, attribute_settings

    from ..attributes.test_probe_reweighting import synthetic

    x, labels, people = synthetic(n_people=12, per_person=3)
    model, _ = fit_attribute_predictor(x, labels, people, AttributeSchema(AgeGroups.parse([30, 50, 70])),
                                       recognizer="dlib", options=FitOptions(folds=2, reweight_hidden=2, max_iter=20))
    path = str(model.save(tmp_path / "probe.pt"))
    same = IdentConfig(attribute_model=path, age_bins=[30, 50, 70])
    _, schema, _, description = _attribute_model(same, attribute_settings(same, {}), [])
    assert list(schema.age_groups.edges) == [30.0, 50.0, 70.0] and description["kind"] == "embedding"
    other = IdentConfig(attribute_model=path, age_bins=[13, 20, 60])
    with pytest.raises(RestoreverError, match=r"has age bins \[30.0, 50.0, 70.0\]; refit it with --age-bins"):
        _attribute_model(other, attribute_settings(other, {}), [])
