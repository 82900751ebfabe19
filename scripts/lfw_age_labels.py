#!/usr/bin/env python
"""Write an image-level age-band labels CSV for ``restorever breakdown --labels`` from the LFW attribute scores.

    python scripts/lfw_age_labels.py --data-root ../shared/data/lfw --out lfw_age.csv
    restorever breakdown runs/lfw --labels lfw_age.csv

Source: ``attributes/lfw_attributes_62people.tsv`` under the data root, the Kumar et al. attribute-classifier scores
(ICCV 2009, "Attribute and Simile Classifiers for Face Verification") of 2,999 images of the 62 LFW people with at
least 20 images. These are *classifier outputs*, not ground-truth ages. The rule is the library's own
(:func:`restorever.attributes.groups.kumar_age_years`, also used by ``attributes fit``): ``old`` when the ``Senior``
score is positive ("looks 60+"), else ``adult``. No finer band: the ``Child``/``Youth``/``Middle Aged`` scores fire
on adults in their twenties and thirties (docs/attributes.md). Coverage: the 2,999 scored images (1,039 old, 1,960
adult) of 62 people, about 23 % of LFW; every other image is ``unlabelled`` in the breakdown, and 47 of the 62
people have images in both bands. The labels are not shipped with restorever: the scores are the LFW attribute
authors' data, so this script derives them from your copy.

Written: a CSV ``item,age_band`` (after ``#`` comment lines naming the source and rule), one row per scored image,
its id as ``restorever eval --protocol lfw`` writes it (``lfw-deepfunneled/NAME/NAME_NNNN.jpg``; ``--prefix`` for
another copy of the tree).
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

TSV = Path("attributes") / "lfw_attributes_62people.tsv"


def age_band_rows(data_root: Path, prefix: str) -> list[tuple[str, str]]:
    """``[(item id, "adult" | "old")]`` for every image of the attribute file with a finite ``Senior`` score."""
    from restorever.attributes.groups import AgeGroups
    from restorever.attributes.labels import person_of, read_kumar_ages

    groups = AgeGroups()
    labels = read_kumar_ages(data_root / TSV, groups)
    prefix = prefix.strip("/")
    return [(f"{prefix}/{person_of(key)}/{key}.jpg" if prefix else f"{person_of(key)}/{key}.jpg",
             groups.names[index]) for key, index in sorted(labels.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="LFW data root holding attributes/")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--prefix", default="lfw-deepfunneled",
                        help="folder of the image tree in the run's item ids (default: lfw-deepfunneled)")
    args = parser.parse_args(argv)
    if not (args.data_root / TSV).is_file():
        print(f"error: {args.data_root / TSV} not found; pass the LFW data root that holds attributes/",
              file=sys.stderr)
        return 2
    rows = age_band_rows(args.data_root, args.prefix)
    counts = Counter(band for _, band in rows)
    people = len({item.split("/")[-2] for item, _ in rows})
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        f.write(f"# from {TSV.as_posix()} (Kumar et al. 2009 attribute-classifier scores), not shipped with "
                "restorever\n")
        f.write("# rule: old = Senior score > 0 ('looks 60+'), else adult; scripts/lfw_age_labels.py\n")
        f.write(f"# coverage: {len(rows)} images of {people} people; other images are unlabelled\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["item", "age_band"])
        writer.writerows(rows)
    print(f"wrote {args.out}: {len(rows)} images of {people} people ({counts['adult']} adult, {counts['old']} old)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
