"""The methods text of an identification run (``restorever ident``, ``protocol.task == "identification"``).

:func:`ident_paragraphs` builds the paragraphs from the identification record only: the split (gallery, enrolled
people, distractors, probes and the options that drew them), degradation of the probes, restoration, recognition,
the gallery search and its attribute filter, the attribute model, the rank metrics, excluded images and software.
Alignment, restoration, recognition and software are the verification text's own sentences
(:mod:`restorever.reports.methods`), which renders the paragraphs (:func:`~restorever.reports.methods.write_methods`
with ``paragraphs=ident_paragraphs``). As there, a sentence whose field the record lacks is left out and no result
is quoted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .methods import (alignment_sentences, degradation_sentences, recognizer_sentences, restorer_sentences,
                      software_sentences)
from .methods_text import Cite, Paragraph, Sentence, and_text, get_in, num_text

__all__ = ["ident_paragraphs", "is_identification"]


def is_identification(record: dict[str, Any]) -> bool:
    """Whether ``record`` is an identification run's (``protocol.task``, as ``restorever validate`` reads it)."""
    return get_in(record, "protocol", "task") == "identification"


def _count(n: Any, one: str, many: str) -> str:
    return f"{num_text(n)} {one if n == 1 else many}"


def _split(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    proto = record.get("protocol") or {}
    name = proto.get("name") or get_in(record, "config", "protocol")
    if not name:
        return []
    s = Sentence().add("Closed-set face identification was evaluated on the {} protocol", name)
    if ("protocol", str(name)) in cite:
        s.add("{}", Cite("protocol", str(name)))
    counts = [proto.get(k) for k in ("gallery_size", "enrolled_people", "distractors", "probes")]
    if all(isinstance(v, int) for v in counts):
        gallery, enrolled, distractors, probes = counts
        s.add(": a gallery of {} images, one for each of {} enrolled people and {} distractors, searched by {} probe "
              "images", num_text(gallery), num_text(enrolled), num_text(distractors), num_text(probes))
        with_probes = proto.get("enrolled_with_probes")
        if isinstance(with_probes, int) and with_probes != enrolled:
            s.add(" of {} of the enrolled people", num_text(with_probes))
    out = [s.add(".")]
    opts = proto.get("split_options") if isinstance(proto.get("split_options"), dict) else {}
    if proto.get("format") == "lfw-ident" and opts.get("min_images") is not None:
        s = Sentence().add("People with at least {} images in the people file", num_text(opts["min_images"]))
        if proto.get("people_file"):
            s.add(" ({})", Path(str(proto["people_file"])).name)
        s.add(" are enrolled with their lowest-numbered usable image (one whose face was found) in the gallery; "
              "their following usable images are the probes")
        if opts.get("max_probes_per_person") is not None:
            s.add(", at most {} a person", num_text(opts["max_probes_per_person"]))
        if opts.get("distractors") is False:
            out.append(s.add(". The gallery has no distractors."))
        else:
            s.add(". People with a single image are distractors: gallery entries that no probe is looking for")
            s.add_if(opts.get("max_distractors") is not None, " (the first {} of them in the order of the sha256 of "
                     "their names)", num_text(opts.get("max_distractors")))
            out.append(s.add("."))
    return out


def _degraded_probes(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    return degradation_sentences(record, cite, "Each probe image was degraded",
                                 "; the gallery images were kept undegraded.")


def _search(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    index = record.get("index") if isinstance(record.get("index"), dict) else {}
    out = []
    if index.get("similarity"):
        s = Sentence().add("Each probe's embedding was compared with the undegraded gallery embeddings by {}",
                           index["similarity"])
        if index.get("backend") and index.get("index"):
            s.add(", with a {} {} index", index["backend"], index["index"])
            nlist, nprobe = get_in(record, "config", "ivf_nlist"), get_in(record, "config", "nprobe")
            s.add_if(index["index"] == "ivf" and nlist and nprobe, " ({} lists, {} searched)", num_text(nlist),
                     num_text(nprobe))
        s.add_if(index.get("ranks"), "; the rank of a probe's mate is {}", index.get("ranks"))
        exact = str(index.get("ranks") or "").startswith("exact")  # retrieval.exact_ranks: ties count against
        out.append(s.add_if(exact, ", and a gallery entry scoring exactly as the mate is counted as ranked above "
                                   "it").add("."))
    flt = record.get("attribute_filter") if isinstance(record.get("attribute_filter"), dict) else None
    if flt and flt.get("attributes") and flt.get("threshold") is not None:
        names = [str(a) for a in flt["attributes"]]
        s = Sentence().add("Each condition was searched a second time with an attribute filter ({}): where a "
                           "probe's most probable class of an attribute has a probability of at least {}, only the "
                           "gallery entries predicted in a compatible class are searched", and_text(names),
                           num_text(flt["threshold"]))
        rules = []
        if "gender" in names:
            rules.append("the same gender")
        if "age" in names and flt.get("age_tolerance") is not None:
            tol = flt["age_tolerance"]
            rules.append("the same age group" if tol == 0 else f"an age group at most {num_text(tol)} from the probe's")
        s.add_if(rules, " ({})", and_text(rules))
        out.append(s.add(", and gallery entries predicted below that probability are always searched. Gallery "
                         "attributes were predicted on the undegraded gallery images, a probe's on the probe as the "
                         "condition gave it (degraded or restored)."))
        conds = record.get("conditions") or []
        reweighted = any(isinstance(get_in(c, "retrieval", "filtered_reweighted"), dict) for c in conds)
        if reweighted and get_in(record, "attribute_model", "reweighting"):
            out.append(Sentence().add("A third search used the same filter on the probabilities refined by the "
                                      "re-weighting module of {}.",
                                      Path(str(record["attribute_model"]["reweighting"])).name))
    return out


def _attribute_model(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    model = record.get("attribute_model") if isinstance(record.get("attribute_model"), dict) else None
    if not model or not model.get("model"):
        return []
    schema = model.get("schema") if isinstance(model.get("schema"), dict) else {}
    attributes = [str(a) for a in schema.get("attributes") or []]
    groups = get_in(schema, "age_groups", "names")
    edges = get_in(schema, "age_groups", "edges")
    s = Sentence().add("Attributes (")
    for i, a in enumerate(attributes):
        s.add("" if i == 0 else ", " if i < len(attributes) - 1 else " and ").add("{}", a)
        if a == "age" and isinstance(groups, list) and isinstance(edges, list) and groups:
            s.add(" in {} groups, {}, split at {} years", num_text(len(groups)), and_text([str(g) for g in groups]),
                  and_text([num_text(e) for e in edges]))
    if model.get("kind") == "embedding":
        files = model.get("files") if isinstance(model.get("files"), dict) else {}
        sha = get_in(files, "model", "sha256")
        s.add(") were predicted from the recognizer's embeddings of each image by a probe, {}",
              Path(str(model["model"])).name)
        s.add_if(sha, " (sha256 {})", str(sha)[:12])
        report = model.get("fit_report") if isinstance(model.get("fit_report"), dict) else {}
        if all(isinstance(report.get(k), int) for k in ("images", "people", "folds")):
            s.add(", fitted on {} labelled images of {} people in {} folds of people; a person it was fitted on is "
                  "predicted by the fold's probe that did not see them", num_text(report["images"]),
                  num_text(report["people"]), num_text(report["folds"]))
    else:
        s.add(") were predicted from each image by the {} model", model["model"])
        if model.get("kind"):
            s.add(" ({})", model["kind"])
    return [s.add(".")]


def _rank_metrics(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    blocks = [c["retrieval"] for c in record.get("conditions") or [] if isinstance(c.get("retrieval"), dict)]
    if not blocks:
        return []
    ks = sorted({int(key[4:]) for b in blocks for key in b if key.startswith("rank") and key[4:].isdigit()})
    out = []
    if ks:
        s = Sentence().add("The {} identification rate", and_text([f"rank-{k}" for k in ks]))
        s.add(" is the fraction of probes whose mate (the gallery image of the same person) is among the k gallery "
              "entries most similar to the probe" if len(ks) == 1 else
              "s are the fractions of probes whose mate (the gallery image of the same person) is among the k "
              "gallery entries most similar to the probe")
        lengths = sorted({len(b["cmc"]) for b in blocks if isinstance(b.get("cmc"), list) and b["cmc"]})
        s.add_if(len(lengths) == 1, "; the cumulative match characteristic (CMC) gives it for k = 1 to {}",
                 num_text(lengths[0] if lengths else 0))
        out.append(s.add("."))
    if any("map" in b for b in blocks):
        out.append(Sentence().add("Mean average precision (mAP) is, with one mate per probe, the mean over the probes "
                                  "of the reciprocal of the mate's rank (0 where a filter left the mate out)."))
    n = sorted({b["n_probes"] for b in blocks if isinstance(b.get("n_probes"), int)})
    if len(n) == 1:
        out.append(Sentence().add("Each condition's rates are over its {} probes.", num_text(n[0])))
    filtered = [b[key] for b in blocks for key in ("filtered", "filtered_reweighted") if isinstance(b.get(key), dict)]
    if filtered:
        s = Sentence().add("For a filtered search the record also gives the mean fraction of the gallery searched, "
                           "the fraction of probes whose mate the filter left out")
        if any("rank1_lost_to_filter" in f for f in filtered):
            s.add(" and the fraction that were first without the filter and left out by it")
        out.append(s.add("."))
    if not any(key.startswith("ci") for b in blocks for key in b):  # none stored (as the schema has it)
        out.append(Sentence().add("No intervals or significance tests were computed for the identification rates."))
    return out


def _attribute_metrics(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    conds = [c for c in record.get("conditions") or [] if isinstance(c.get("attributes"), dict) and c["attributes"]]
    entries = [e for c in conds for v in ("raw", "reweighted") if isinstance(c["attributes"].get(v), dict)
               for e in c["attributes"][v].values() if isinstance(e, dict)]
    if not entries:
        return []
    s = Sentence().add("Attribute predictions of the probes are scored against the protocol's labels (accuracy, "
                       "balanced accuracy, expected calibration error and negative log-likelihood)")
    if any(isinstance(e.get("consistency"), dict) for e in entries):
        s.add(", and each degraded or restored probe's prediction is compared with that of its undegraded image "
              "(the fraction whose predicted class changed)")
    return [s.add(".")]


def _excluded_images(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    proto, cfg = record.get("protocol") or {}, record.get("config") or {}
    skipped = proto.get("skipped") if isinstance(proto.get("skipped"), list) else None
    out = []
    if skipped is not None:
        dropped = [x for x in skipped if isinstance(x, dict) and x.get("reason") == "no usable image: person dropped"]
        s = Sentence().add("{} of the split were left out as unusable", _count(len(skipped) - len(dropped),
                                                                               "image", "images"))
        s.add_if(dropped, ", and {} with no usable image", _count(len(dropped), "enrolled person was dropped",
                                                                     "enrolled people were dropped"))
        s.add_if(cfg.get("on_error"), " (on_error {})", cfg.get("on_error"))
        if get_in(proto, "split_options", "max_probes_per_person") is not None and proto.get("format") == "lfw-ident":
            s.add("; an enrolled person's unusable image was replaced by their next image, where they had one")
        out.append(s.add("."))
    fallbacks = proto.get("landmark_fallbacks")
    if isinstance(fallbacks, list):
        out.append(Sentence().add("{} in which no face was found were aligned with the protocol's fallback "
                                  "landmarks.", _count(len(fallbacks), "image", "images")))
    return out


_PARAGRAPHS = (("Protocol", _split), ("Alignment", alignment_sentences), ("Degradation", _degraded_probes),
               ("Restoration", restorer_sentences), ("Recognition", recognizer_sentences), ("Search", _search),
               ("Attributes", _attribute_model), ("Metrics", _rank_metrics), ("Attribute metrics", _attribute_metrics),
               ("Excluded data", _excluded_images), ("Software", software_sentences))


def ident_paragraphs(record: dict[str, Any], references: Sequence[tuple[str, str, str]] | None = None
                     ) -> list[Paragraph]:
    """``[(title, sentences), ...]`` of an identification record, as
    :func:`~restorever.reports.methods.methods_paragraphs` of a verification one."""
    from .tables import run_references

    refs = run_references(record) if references is None else references
    cite = {(role, name) for role, name, _ in refs}
    return [(title, sentences) for title, build in _PARAGRAPHS if (sentences := build(record, cite))]
