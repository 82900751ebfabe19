"""A methods text a paper can cite from, generated from a run's ``results.json`` only.

:func:`methods_paragraphs` turns a verification record into short paragraphs (protocol, alignment, degradation,
restoration, recognition, metrics, statistics, excluded data, software); :func:`methods_markdown` and
:func:`methods_latex` render them, the LaTeX with ``\\cite`` keys that :func:`references_bibtex` defines (one
``@misc`` entry per line of the report's References, :func:`restorever.reports.tables.run_references`).

Every number and name comes from the record. A sentence whose fields a record lacks (an older record without
``setup``, a record without statistics) is left out, never filled with a default. The text states what was done,
not what came out: no result is quoted.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from .methods_text import Cite, Paragraph, Sentence, and_text, get_in, num_text
from .rate_stats import stored_rule
from .results import is_subset
from .statistics import person_of
from .tables import latex_escape, run_references

__all__ = ["Cite", "Sentence", "methods_paragraphs", "methods_markdown", "methods_latex", "references_bibtex",
           "cite_keys", "write_methods", "METHODS_FILES"]

#: the files :func:`write_methods` writes into its folder
METHODS_FILES = ("methods.md", "methods.tex", "references.bib")


def _rule(rule: Any, unit: str = "") -> str | None:
    """A preset's sampling rule (``DegradationPreset.describe``) in words, or ``None`` for one it does not know."""
    if isinstance(rule, list) and rule:
        return "drawn from {" + ", ".join(num_text(v) for v in rule) + "}" + unit
    if isinstance(rule, dict) and len(rule) == 1:
        (kind, bounds), = rule.items()
        if isinstance(bounds, list) and len(bounds) == 2:
            lo, hi = (num_text(v) for v in bounds)
            what = {"uniform": "uniformly", "randint": "as a whole number uniformly"}.get(kind)
            return f"drawn {what} in [{lo}, {hi}]{unit}" if what else None
    return None


def _weights_text(record: dict[str, Any], model: str) -> list[str]:
    """``ROLE FILE (sha256 PREFIX)`` of each weight file the record lists for ``model``."""
    out = []
    for key, entry in (record.get("weights") or {}).items():
        if not key.startswith(f"{model}:") or not isinstance(entry, dict):
            continue
        role, file, sha = key.split(":", 1)[1], Path(str(entry.get("file", "?"))).name, entry.get("sha256")
        out.append(f"{role} {file} (" + (f"sha256 {sha[:12]}" if sha else "not hashed") + ")")
    return out


def _options_text(options: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "pretrained")


# --------------------------------------------------------------------------------------------------- paragraphs

def _protocol(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    proto, cfg = record.get("protocol") or {}, record.get("config") or {}
    name = proto.get("name") or cfg.get("protocol")
    if not name:
        return []
    s = Sentence().add("Face verification was evaluated on the {} protocol", name)
    if ("protocol", str(name)) in cite:
        s.add("{}", Cite("protocol", str(name)))
    pairs = record.get("pairs") or {}
    people = {person_of(i) for i in [*(pairs.get("a") or []), *(pairs.get("b") or [])]}
    if proto.get("pairs") is not None:
        s.add(": {} image pairs", num_text(proto["pairs"]))
        if people:
            s.add(" of {} people", num_text(len(people)))
        if proto.get("images") is not None:
            s.add(" ({} images)", num_text(proto["images"]))
    if proto.get("folds") == 1:
        s.add(", in a single fold")
    elif proto.get("folds") is not None:
        s.add(", in {} cross-validation folds", num_text(proto["folds"]))
    out = [s.add(".")]
    if is_subset(record) and proto.get("pairs_requested") is not None:
        out.append(Sentence().add("These are {} of the protocol's pairs, taken in file order and balanced over the "
                                  "folds and over same and different pairs.", num_text(proto["pairs_requested"])))
    if proto.get("pairs_sha256"):
        out.append(Sentence().add("The pair list's sha256 begins {}.", str(proto["pairs_sha256"])[:12]))
    return out


def alignment_sentences(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    cfg, setup = record.get("config") or {}, get_in(record, "setup", "alignment") or {}
    detector, template = cfg.get("detector"), cfg.get("template")
    out = []
    if detector:
        s = Sentence().add("Facial landmarks")
        if setup.get("landmarks"):
            s.add(" ({} points)", num_text(setup["landmarks"]))
        s.add(" were detected with {}", detector)
        if ("landmark detector", str(detector)) in cite:
            s.add("{}", Cite("landmark detector", str(detector)))
        out.append(s.add(" on each undegraded image."))
    if template:
        s = Sentence().add("Each face was aligned to the {} template", template)
        size = setup.get("size") if setup.get("template") == template else None
        if isinstance(size, list) and len(size) == 2:
            s.add(" ({} x {} pixels)", num_text(size[0]), num_text(size[1]))
        fit = get_in(record, "cache", "identity", "alignment_fit")
        out.append(s.add(" by a {} similarity transform of its landmarks.", fit) if fit else
                   s.add(" by a similarity transform of its landmarks."))
    align_on = cfg.get("align_on")
    if cfg.get("scales") and align_on == "clean":
        out.append(Sentence().add("Degradation was applied to the aligned crop, so a degraded face keeps the "
                                  "landmarks of its undegraded image (oracle alignment)."))
    elif cfg.get("scales") and align_on == "degraded":
        s = Sentence().add("Degradation was applied to the aligned crop; landmarks were then detected again on each "
                           "degraded crop, which was aligned again to them, or used as it was where no face was "
                           "found")
        counts = [(c.get("restorer"), c.get("scale"), c["alignment"]) for c in record.get("conditions") or []
                  if isinstance(c.get("alignment"), dict) and "detected" in c["alignment"]]
        for i, (restorer, scale, block) in enumerate(counts):
            s.add(" (" if i == 0 else "; ").add("{} at scale {}: {} found, {} not found", restorer, num_text(scale),
                                                 num_text(block["detected"]), num_text(block.get("not_found", 0)))
        out.append(s.add(")." if counts else "."))
    return out


def _degradation(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    side = get_in(record, "config", "degrade_side")
    opening = {"probe": "The second (probe) image of each pair was degraded",
               "both": "Both images of each pair were degraded"}.get(side, "Images were degraded")
    return degradation_sentences(record, cite, opening,
                                 "; the first image was kept undegraded." if side == "probe" else ".")


def degradation_sentences(record: dict[str, Any], cite: set[tuple[str, str]], opening: str, kept: str
                          ) -> list[Sentence]:
    """The Degradation paragraph: ``opening`` (what was degraded), preset, scales and seed, ``kept`` (what was not,
    ending the sentence), then what was done to a degraded image from ``setup.degradation`` (the preset's recorded
    sampling rules; left out where the record lacks them or holds another preset's)."""
    cfg = record.get("config") or {}
    if "scales" not in cfg:
        return []
    scales, preset = cfg.get("scales") or [], cfg.get("degradation")
    if not scales:
        return [Sentence().add("No degradation was applied.")]
    s = Sentence().add(opening)
    if preset:
        s.add(" with the {} degradation", preset)
        if ("degradation", str(preset)) in cite:
            s.add("{}", Cite("degradation", str(preset)))
    s.add(" at the scale factors {}", and_text([num_text(x) for x in scales]))
    if cfg.get("seed") is not None:
        s.add(", seed {}", num_text(cfg["seed"]))
    out = [s.add(kept)]
    rules = get_in(record, "setup", "degradation")
    if isinstance(rules, dict) and rules.get("name") == preset:
        texts = {key: _rule(rules.get(key), unit) for key, unit in
                 (("sigma", " pixels"), ("theta", " radians"), ("noise", " grey levels"), ("jpeg", ""))}
        if all(texts.values()) and rules.get("kernel_size") is not None and rules.get("iso_prob") is not None:
            size = num_text(rules["kernel_size"])
            s = Sentence().add("Each degraded image was blurred with a Gaussian kernel of {} x {} pixels (isotropic "
                               "with probability {}; standard deviations {}; angle {}), downsampled by the scale "
                               "factor, given Gaussian noise of standard deviation {}, JPEG-compressed at a quality {} "
                               "and upsampled back to the crop size", size, size, num_text(rules["iso_prob"]),
                               texts["sigma"], texts["theta"], texts["noise"], texts["jpeg"])
            if rules.get("source"):
                s.add(" (as in {})", rules["source"])
            out.append(s.add(". The parameters of an image depend only on the seed, the scale and the image, so "
                             "every restorer was given the same degraded faces."))
    return out


def restorer_sentences(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    cfg = record.get("config") or {}
    restorers = [str(n) for n in cfg.get("restorers") or []]
    ids = get_in(record, "cache", "identity", "restorers") or {}
    out = []
    if "none" in restorers and cfg.get("scales"):
        out.append(Sentence().add("The degraded faces were also recognised as they were, without restoration "
                                  "(none)."))
    for name in restorers:
        if name == "none":
            continue
        s = Sentence().add("Faces were restored with {}", name)
        if ("restorer", name) in cite:
            s.add("{}", Cite("restorer", name))
        ident = ids.get(name) if isinstance(ids.get(name), dict) else None
        options = ident.get("options") if ident and isinstance(ident.get("options"), dict) else None
        files = _weights_text(record, name)
        if options is not None and options.get("pretrained") is False:
            s.add(" with random weights (not trained)")
        elif files:
            s.add(", weights {}", and_text(files))
        elif ident is not None and not ident.get("weights"):
            s.add(", which has no weight file")
        if options is not None:
            s.add("; options {}", _options_text(options)) if _options_text(options) else s.add("; default options")
        plugin = ident.get("plugin") if ident else None
        if isinstance(plugin, dict) and plugin.get("module"):
            s.add("; a plugin, module {}", plugin["module"])
            if plugin.get("sha256"):
                s.add(" (file sha256 {})", str(plugin["sha256"])[:12])
        out.append(s.add("."))
    return out


def recognizer_sentences(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    cfg = record.get("config") or {}
    name = cfg.get("recognizer")
    if not name:
        return []
    s = Sentence().add("Faces were recognised with {}", name)
    if ("recognizer", str(name)) in cite:
        s.add("{}", Cite("recognizer", str(name)))
    files = _weights_text(record, str(name))
    if files:
        s.add(" (weights {})", and_text(files))
    setup = get_in(record, "setup", "recognizer") or {}
    if setup.get("embedding_dim") and setup.get("name") == name:
        s.add(", which gives {}-dimensional embeddings", num_text(setup["embedding_dim"]))
    if "flip_test" in cfg:
        s.add(", with the flip test (each face and its mirror image)" if cfg["flip_test"] else
              ", without the flip test")
    options = get_in(record, "cache", "identity", "recognizer", "options")
    if isinstance(options, dict) and _options_text(options):
        s.add("; options {}", _options_text(options))
    out = [s.add(".")]
    crop = setup.get("input_crop") if setup.get("name") == name else None
    if isinstance(crop, dict):
        out += _input_crop(crop)
    similarities = list(dict.fromkeys(c.get("similarity") for c in record.get("conditions") or []
                                      if c.get("similarity")))
    words = {"cosine": "the cosine similarity of their embeddings",
             "euclidean": "the negative Euclidean distance between their embeddings"}
    if len(similarities) == 1 and similarities[0] in words:
        out.append(Sentence().add("A pair's score is " + words[similarities[0]] + "."))
    return out


def _input_crop(crop: dict[str, Any]) -> list[Sentence]:
    """The recognizer's input crop (``setup.recognizer.input_crop``) in one sentence; none without a size."""
    size = crop.get("size")
    if not (isinstance(size, list) and len(size) == 2):
        return []
    w, h = num_text(size[0]), num_text(size[1])
    if crop.get("method") == "template" and crop.get("template"):
        s = Sentence().add("Its input is a {} x {} pixel crop of the aligned face, cut by a similarity transform of "
                           "the face's", w, h).add_if(crop.get("landmarks"), " {}", num_text(crop.get("landmarks")))
        return [s.add(" landmarks to the {} template.", crop["template"])]
    if crop.get("method") == "dlib_chip":
        s = Sentence().add("Its input is dlib's own {} x {} pixel face chip", w, h)
        s.add_if(crop.get("padding") is not None, " (padding {})", num_text(crop.get("padding")))
        points = crop.get("predictor_landmarks")
        s.add(", cut around the").add_if(points, " {}", num_text(points))
        return [s.add(" points that dlib's shape predictor finds inside the face box implied by the aligned face's "
                      "landmarks.")]
    return [Sentence().add("Its input is a {} x {} pixel crop", w, h).add_if(crop.get("method"), " ({})",
                                                                              crop.get("method")).add(".")]


def _metrics(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    conds = [c for c in record.get("conditions") or [] if isinstance(c.get("verification"), dict)]
    if not conds:
        return []
    folds = get_in(record, "protocol", "folds")
    if folds == 1:  # kfold_accuracy chooses the threshold on the evaluated pairs themselves
        out = [Sentence().add("Verification accuracy is the accuracy over all pairs at the threshold that maximises "
                              "it on the same pairs: with a single fold no threshold is chosen on held-out pairs, so "
                              "the accuracy is optimistic.")]
    else:
        s = Sentence().add("Verification accuracy is the mean over the ")
        s.add("{} folds", num_text(folds)) if folds is not None else s.add("folds")
        out = [s.add(" of each fold's accuracy at the threshold that maximises the accuracy on the other folds, "
                     "with its standard error over the folds.")]
    # a FAR is reported only where some condition has a value: tar_at_far is None below 1/FAR impostor pairs
    stored = [c["verification"].get("tar_at_far") for c in conds]
    stored = [t for t in stored if isinstance(t, dict)]
    fars = list(dict.fromkeys(f for t in stored for f in t))
    resolved = [f for f in fars if any(t.get(f) is not None for t in stored)]
    s = Sentence().add("The area under the ROC curve (AUC)").add(", the equal error rate (EER)" if resolved else
                                                                " and the equal error rate (EER)")
    if resolved:
        s.add(" and the true accept rate at false accept rate" + ("s" if len(resolved) > 1 else "") + " {} (TAR at "
              "FAR)", and_text(resolved))
    pairs = get_in(record, "protocol", "pairs")
    out.append(s.add(" are computed over all {} pairs.", num_text(pairs)) if pairs is not None else
               s.add(" are computed over all pairs."))
    if len(resolved) < len(fars):
        unresolved = [f for f in fars if f not in resolved]
        s = Sentence().add("TAR at FAR {} is not reported: it needs at least 1/FAR different-identity pairs",
                           and_text(unresolved))
        same = get_in(conds[0], "scores", "same")
        n_neg = sum(1 for v in same if not v) if isinstance(same, list) else None
        out.append(s.add(", and there are {}.", num_text(n_neg)) if n_neg is not None else s.add("."))
    probes = [get_in(c, "identity", "n") for c in conds if c.get("scale") is not None]
    if any(get_in(c, "identity", "cosine_to_clean_mean") is not None for c in conds):
        s = Sentence().add("Identity preservation is the cosine similarity between the embedding of a degraded or "
                           "restored face and that of the same image undegraded, averaged over the ")
        n = sorted({p for p in probes if isinstance(p, int)})
        s.add_if(len(n) == 1, "{} ", _range(n))
        out.append(s.add("probe images (mean and median)."))
    return out


def _collect(conds: Sequence[dict[str, Any]], *path: str) -> list[Any]:
    values = (get_in(c, *path) for c in conds)
    return list(dict.fromkeys(v for v in values if v is not None and not isinstance(v, dict)))


def _range(values: Sequence[Any]) -> str:
    """One value, or ``low to high`` where conditions recorded several (empty for none)."""
    if not values:
        return ""
    return num_text(values[0]) if len(values) == 1 else f"{num_text(min(values))} to {num_text(max(values))}"


#: how a replicate reads TAR (``tar_rule``, :mod:`restorever.reports.rate_stats`), in words (no digits: every number
#: of a methods text is a recorded one)
_RULE_SENTENCE = {
    1: "Each replicate reads the TAR at the FAR itself, on its resampled pairs.",
    2: "Each replicate reads the TAR at the false accept rate (k plus one half)/N, N being the number of "
       "different-identity pairs and k the largest whole number with k/N at most the FAR: the middle of the observed "
       "operating point's step of the ROC, which gives the reported TAR on the observed pairs, so that a replicate "
       "drawing slightly fewer different-identity pairs than observed is not moved to a stricter operating point."}


def _statistics(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    conds = record.get("conditions") or []
    kinds = [(key, [c[key] for c in conds if isinstance(c.get(key), dict)])
             for key in ("comparison_to_clean", "comparison_to_none")]
    out = []
    families = [(key, comps) for key, comps in kinds if comps]
    if families:
        words = {"comparison_to_clean": "each degraded condition against the undegraded one",
                 "comparison_to_none": "each restorer against no restoration at the same scale"}
        s = Sentence().add("Conditions were compared on the same pairs: ")
        for i, (key, comps) in enumerate(families):
            sizes = _collect(comps, "mcnemar", "family_size")
            s.add("" if i == 0 else "; ").add(words[key])
            s.add_if(sizes, " (a family of {} comparisons)", _range(sizes))
        out.append(s.add("."))
        every = [c for _, comps in families for c in comps]
        boot = [c.get("bootstrap") for c in every if isinstance(c.get("bootstrap"), dict)]
        levels, n_boot = _collect(every, "ci_level"), _collect(boot, "n_boot")
        if levels and n_boot:
            s = Sentence().add("Accuracy differences have {} % percentile bootstrap intervals from {} replicates",
                               _range([100 * v for v in levels]), _range(n_boot))
            seeds, clusters = _collect(boot, "seed"), _collect(boot, "clusters")
            s.add_if(seeds, " (seed {})", _range(seeds))
            resampled = _collect(boot, "resampled")
            if len(resampled) == 1:
                s.add(" that resample {}", resampled[0])
            s.add_if(clusters, ", {} people", _range(clusters))
            out.append(s.add("."))
        methods = _collect(every, "mcnemar", "method")
        clustered = _collect(every, "mcnemar_clustered", "method")
        if methods:
            s = Sentence().add("They are tested with McNemar's test over the pairs ({})", and_text(methods))
            s.add_if(clustered, " and over people ({})", and_text(clustered))
            holm = any(get_in(c, "mcnemar", "p_holm") is not None for c in every)
            out.append(s.add("; p-values are Holm-adjusted within each family and each test." if holm else "."))
        if any(isinstance(get_in(c, "auc"), dict) for c in every):
            out.append(Sentence().add("AUC and TAR at FAR differences against no restoration have intervals from "
                                      "the same resampling of people."))
            out += [Sentence().add(_RULE_SENTENCE[rule]) for rule in sorted({stored_rule(c) for c in every} & {1, 2})]
    idents = [c["identity"] for c in conds if isinstance(c.get("identity"), dict) and "ci_level" in c["identity"]]
    boot = [i["bootstrap"] for i in idents if isinstance(i.get("bootstrap"), dict)]
    if idents and _collect(boot, "n_boot"):
        s = Sentence().add("The mean cosine to the undegraded image has {} % intervals from {} bootstrap replicates",
                           _range([100 * v for v in _collect(idents, "ci_level")]), _range(_collect(boot, "n_boot")))
        resampled = _collect(boot, "resampled")
        s.add_if(len(resampled) == 1, " that resample {}", and_text(resampled))
        out.append(s.add("."))
    flips = [c["identity_comparison_to_none"]["sign_flip"] for c in conds
             if isinstance(get_in(c, "identity_comparison_to_none", "sign_flip"), dict)]
    if flips:
        s = Sentence().add("Its difference between a restorer and no restoration is tested with a sign-flip test "
                           "over people ({})", and_text(_collect(flips, "method")))
        draws = _collect(flips, "n_draws")
        s.add_if(draws, " with {} random draws", _range(draws))
        sizes = _collect(flips, "family_size")
        out.append(s.add(", Holm-adjusted over {} comparisons.", _range(sizes)) if sizes else s.add("."))
    return out


def _excluded(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    proto, cfg = record.get("protocol") or {}, record.get("config") or {}
    counts = {key: len(proto[key]) for key in ("skipped", "failed_images", "landmark_fallbacks")
              if isinstance(proto.get(key), list)}
    out = []
    if "skipped" in counts:
        s = Sentence().add("{} of the {} requested pairs were skipped", num_text(counts["skipped"]),
                           num_text(proto.get("pairs_requested", proto.get("pairs", "?"))))
        s.add_if("failed_images" in counts, ", as {} images could not be used", num_text(counts.get("failed_images")))
        out.append(s.add_if(cfg.get("on_error"), " (on_error {})", cfg.get("on_error")).add("."))
    if "landmark_fallbacks" in counts:
        out.append(Sentence().add("{} images in which no face was found were aligned with the protocol's fallback "
                                  "landmarks.", num_text(counts["landmark_fallbacks"])))
    return out


def software_sentences(record: dict[str, Any], cite: set[tuple[str, str]]) -> list[Sentence]:
    env, version = record.get("environment") or {}, record.get("restorever_version")
    if not version:
        return []
    s = Sentence().add("The evaluation ran with restorever {}", version)
    software = f"restorever {version}"
    if ("software", software) in cite:
        s.add("{}", Cite("software", software))
    if env.get("python"):
        s.add(", Python {}", env["python"])
    if env.get("torch"):
        s.add(", PyTorch {}", env["torch"])
    libraries = env.get("libraries") if isinstance(env.get("libraries"), dict) else {}
    if libraries:
        s.add(" and {}", and_text([str(v) if str(v).startswith(str(k)) else f"{k} {v}" for k, v in libraries.items()]))
    device = str(env.get("device") or "")
    if device:
        kind = device.split(":")[0]
        s.add(" on a {}", env["gpu"]) if kind == "cuda" and env.get("gpu") else s.add(" on {}", kind)
    world = get_in(record, "distributed", "world_size")
    if isinstance(world, int) and world > 1:
        s.add(" in {} processes", num_text(world))
    return [s.add("."), *_numerics(record)]


def _numerics(record: dict[str, Any]) -> list[Sentence]:
    """The models' arithmetic as it ran (``setup.precision``: weight dtypes, autocast dtype), models that ran alike
    named together, and on CUDA the TF32 and cuDNN switches (``environment.cuda_math``); none in a record without
    them (older records, models without torch weights, the CPU)."""
    precision = get_in(record, "setup", "precision")
    groups: dict[str, list[str]] = {}
    for name, entry in (precision.items() if isinstance(precision, dict) else ()):
        weights = entry.get("weights") if isinstance(entry, dict) else None
        if isinstance(weights, list) and weights:
            how = and_text([str(w) for w in weights]) + " weights"
            how += f" under {entry['autocast']} autocast" if entry.get("autocast") else " without autocast"
            parts = entry.get("float32_parts")
            if isinstance(parts, list) and parts:
                how += f" ({and_text([str(p) for p in parts])} in float32)"
            groups.setdefault(how, []).append(str(name))
    out = []
    if groups:
        s = Sentence().add("Numerical precision: ")
        for i, (how, names) in enumerate(groups.items()):
            s.add("{} ran with {}" if i == 0 else "; {} with {}", and_text(names), how)
        out.append(s.add("."))
    math = get_in(record, "environment", "cuda_math")
    if isinstance(math, dict) and all(isinstance(math.get(k), bool) for k in ("tf32_cudnn", "tf32_matmul")):
        where = {"convolutions": math["tf32_cudnn"], "matrix products": math["tf32_matmul"]}
        on, off = [w for w, v in where.items() if v], [w for w, v in where.items() if not v]
        s = Sentence().add("On the GPU, TF32 was ")
        s.add("allowed in " + " and ".join(on) + (" and not in " + off[0] if off else "") if on else "off")
        if math.get("float32_matmul_precision") == "medium":  # PyTorch may then multiply float32 in bfloat16
            s.add("; float32 matrix products could also run in bfloat16 (float32 matmul precision set to medium)")
        if isinstance(math.get("cudnn_benchmark"), bool):
            s.add("; cuDNN autotuning was " + ("on" if math["cudnn_benchmark"] else "off"))
        out.append(s.add("."))
    return out


_PARAGRAPHS: tuple[tuple[str, Callable[[dict[str, Any], set[tuple[str, str]]], list[Sentence]]], ...] = (
    ("Protocol", _protocol), ("Alignment", alignment_sentences), ("Degradation", _degradation),
    ("Restoration", restorer_sentences), ("Recognition", recognizer_sentences), ("Metrics", _metrics),
    ("Statistics", _statistics), ("Excluded data", _excluded), ("Software", software_sentences))


def methods_paragraphs(record: dict[str, Any], references: Sequence[tuple[str, str, str]] | None = None
                       ) -> list[Paragraph]:
    """``[(title, sentences), ...]`` of a verification record; a paragraph with no sentence is left out.
    ``references`` (default :func:`run_references`) says which :class:`Cite` s can be made."""
    refs = run_references(record) if references is None else references
    cite = {(role, name) for role, name, _ in refs}
    return [(title, sentences) for title, build in _PARAGRAPHS if (sentences := build(record, cite))]


# --------------------------------------------------------------------------------------------------- rendering

def cite_keys(references: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """A BibTeX key per ``(role, name)``: ``rv-ROLE-NAME`` in ASCII letters, digits and ``-``, with 8 hex digits of
    the name's sha256 added where the name holds characters other than letters, digits, space, ``.``, ``_``, ``-``
    or its key would repeat an earlier one (``vqfr_v2`` after ``vqfr-v2``)."""
    keys: dict[tuple[str, str], str] = {}
    for role, name, _ in references:
        key = "rv-" + re.sub(r"[^A-Za-z0-9]+", "-", f"{role}-{name}").strip("-")
        if re.search(r"[^A-Za-z0-9 ._-]", name) or not name or key in keys.values():
            key += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        keys[(role, name)] = key
    return keys


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|{}])")


def _md_escape(value: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"[\x00-\x1f\x7f]", " ", str(value)))


#: builds a record's paragraphs from it and its References (:func:`methods_paragraphs`, or an identification
#: run's :func:`restorever.reports.methods_ident.ident_paragraphs`)
Builder = Callable[[dict[str, Any], Sequence[tuple[str, str, str]]], list[Paragraph]]


def methods_markdown(record: dict[str, Any], paragraphs: Builder | None = None) -> str:
    """The methods paragraphs (``paragraphs``, default :func:`methods_paragraphs`) as markdown, citations ``[n]``
    into a numbered References list at the end."""
    refs = run_references(record)
    numbers = {(role, name): i + 1 for i, (role, name, _) in enumerate(refs)}

    def value(v: Any) -> str:
        return f" [{numbers[(v.role, v.name)]}]" if isinstance(v, Cite) else _md_escape(v)

    lines = ["# Experimental setup", "",
             f"Generated by restorever {_md_escape(record.get('restorever_version', '?'))} from results.json; "
             f"every number and name below is read from the record.", ""]
    for title, sentences in (paragraphs or methods_paragraphs)(record, refs):
        lines += [f"**{title}.** " + " ".join(s.render(lambda t: t, value) for s in sentences), ""]
    if refs:
        lines += ["## References", ""]
        lines += [f"{numbers[(role, name)]}. {_md_escape(name)} ({role}): {_md_escape(ref)}"
                  for role, name, ref in refs]
        lines.append("")
    return "\n".join(lines)


def methods_latex(record: dict[str, Any], paragraphs: Builder | None = None) -> str:
    """The methods paragraphs (as :func:`methods_markdown`'s) as LaTeX (``\\paragraph`` each), record strings
    escaped, citations ``~\\cite{key}`` into :func:`references_bibtex`; UTF-8 (non-ASCII names are written as they
    are)."""
    refs = run_references(record)
    keys = cite_keys(refs)

    def value(v: Any) -> str:
        return f"~\\cite{{{keys[(v.role, v.name)]}}}" if isinstance(v, Cite) else latex_escape(v)

    version = re.sub(r"[\x00-\x1f\x7f]", " ", str(record.get("restorever_version", "?")))
    lines = [f"% restorever {version}: methods text generated from results.json; citations in references.bib "
             f"(needs \\usepackage{{url}}); UTF-8"]
    for title, sentences in (paragraphs or methods_paragraphs)(record, refs):
        lines += [f"\\paragraph{{{title}.}} " + " ".join(s.render(latex_escape, value) for s in sentences), ""]
    return "\n".join(lines)


_URL = re.compile(r"https?://[^\s;,()]+")


def _bib_value(text: str) -> str:
    """A reference's text for a BibTeX field: URLs in ``\\url{}`` (those holding none of ``%#{}\\^~``), the rest
    escaped as LaTeX text."""
    out, end = [], 0
    for m in _URL.finditer(text):
        out.append(latex_escape(text[end:m.start()]))
        url = m.group(0)
        out.append(f"\\url{{{url}}}" if not re.search(r"[%#{}\\^~]", url) else latex_escape(url))
        end = m.end()
    out.append(latex_escape(text[end:]))
    return "".join(out)


def references_bibtex(record: dict[str, Any]) -> str:
    """One ``@misc`` entry per References line (:func:`run_references`), keyed by :func:`cite_keys`: ``title`` the
    name, ``note`` the reference as listed (URLs in ``\\url{}``), ``key`` the name for sorting."""
    refs = run_references(record)
    keys = cite_keys(refs)
    entries = [f"% restorever {latex_escape(record.get('restorever_version', '?'))}: what the run used, for "
               f"methods.tex (needs \\usepackage{{url}})"]
    for role, name, ref in refs:
        entries.append(f"@misc{{{keys[(role, name)]},\n  title = {{{latex_escape(name)} ({latex_escape(role)})}},\n"
                       f"  note = {{{_bib_value(ref)}}},\n  key = {{{latex_escape(name)}}}\n}}")
    return "\n\n".join(entries) + "\n"


def write_methods(record: dict[str, Any], folder: str | Path, paragraphs: Builder | None = None) -> dict[str, Path]:
    """Write ``methods.md``, ``methods.tex`` and ``references.bib`` into ``folder`` (``paragraphs`` as
    :func:`methods_markdown`'s); returns ``{file name: path}``."""
    from ..files import atomic_write_text

    folder = Path(folder)
    texts = {"methods.md": methods_markdown(record, paragraphs), "methods.tex": methods_latex(record, paragraphs),
             "references.bib": references_bibtex(record)}
    for name, text in texts.items():
        atomic_write_text(folder / name, text)
    return {name: folder / name for name in texts}
