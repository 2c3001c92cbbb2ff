#!/usr/bin/env python3
"""Recompute the golden counts that the Rust tests assert, from the raw data files.

Checks:
  * tests/cli.rs `data_info_prints_the_real_counts`: how many ImageNet labels, CIFAR-100 fine
    names and coarse names map to at least one USF word (598 of 1000, 97 of 100, 9 of 20);
  * tests/iwan.rs `label_graph_word_count_is_golden`: the words (340) and undirected edges
    (14,468) of the IWAN graph over all 10,000 CIFAR-100 test images, each annotated with its
    fine and coarse label words at strength 1, topWWK = 4, FSG strengths, depth 1.

It re-implements the written rules (src/iwan/words.rs module docs, src/iwan/graph.rs module
docs) with the Python standard library only and shares no code with the Rust crate.

Usage: python3 scripts/golden_counts.py [DATA_ROOT]
DATA_ROOT defaults to $HARNESS_DATA, else ../shared/data beside the checkout.
"""
import sys

from peer_common import data_root

TOP_WWK = 4  # associates kept per word


def read_lines(path):
    """Non-blank lines, whitespace-stripped."""
    with open(path, encoding="utf-8") as f:
        return [l.strip() for l in f.read().split("\n") if l.strip()]


def load_usf(path):
    """USF norms as (cue, target, fsg) rows, words lower-cased, fsg None when `?` or empty."""
    lines = read_lines(path)
    header = [h.strip() for h in lines[0].split(",")]
    cue, target, fsg = (header.index(c) for c in ("CUE", "TARGET", "FSG"))
    rows = []
    for line in lines[1:]:
        f = [x.strip() for x in line.split(",")]
        if len(f) != len(header):
            sys.exit(f"{path}: ragged line {line!r}")
        s = None if f[fsg] in ("?", "") else float(f[fsg])
        rows.append((f[cue].lower(), f[target].lower(), s))
    return rows


def normalize(label, vocab):
    """USF words of a label (src/iwan/words.rs):
    lower-case; split at commas into synonyms; in each, `_` and `-` become spaces and whitespace
    collapses; keep the whole synonym if it is a USF word (cue or target), else its last word
    (the head noun) if that is one; drop repeats, first occurrence kept."""
    out = []
    for synonym in label.lower().split(","):
        phrase = " ".join(synonym.replace("_", " ").replace("-", " ").split())
        if not phrase:
            continue
        head = phrase.split(" ")[-1]
        word = phrase if phrase in vocab else head if head in vocab else None
        if word is not None and word not in out:
            out.append(word)
    return out


def covered(labels, vocab):
    return sum(1 for l in labels if normalize(l, vocab))


def label_graph(test_bin, fine, coarse, usf):
    """(words, edges) of the IWAN graph whose database images carry their label words.

    Words: every word of some image, plus (depth 1) each such word's top-`TOP_WWK` USF targets
    when it is a cue, ranked by FSG descending, ties by target ascending, rows with FSG missing
    or 0 ignored.  Edges are undirected and counted once per node pair: image-word (one per
    distinct word of an image) and word-word (word - associate, self pairs dropped; A->B and
    B->A are one edge)."""
    data = open(test_bin, "rb").read()
    rec = 2 + 3072  # coarse byte, fine byte, 3072 pixel bytes
    if len(data) % rec:
        sys.exit(f"{test_bin}: {len(data)} bytes is not a multiple of {rec}")
    vocab = {w for c, t, _ in usf for w in (c, t)}
    image_words = []
    for i in range(0, len(data), rec):
        c, f = data[i], data[i + 1]
        words = []
        for w in normalize(fine[f], vocab) + normalize(coarse[c], vocab):
            if w not in words:
                words.append(w)
        image_words.append(words)

    # Each cue's strongest associates. FSG has three decimals, so float64 orders it as f32 does.
    # The tie rule matters: 19 label words tie at the 4th place, and ranking ties by target
    # descending instead would give 14,467 edges.
    assoc = {}
    for c, t, s in usf:
        if s is not None and s > 0:
            assoc.setdefault(c, []).append((t, s))
    for c in assoc:
        assoc[c] = sorted(assoc[c], key=lambda ts: (-ts[1], ts[0]))[:TOP_WWK]

    image_level = set(w for ws in image_words for w in ws)
    words = set(image_level)
    edges = set()
    for i, ws in enumerate(image_words):
        edges.update(frozenset((("img", i), ("word", w))) for w in ws)
    for w in image_level:  # depth 1: only the image words are expanded
        for t, _ in assoc.get(w, []):
            words.add(t)
            if t != w:
                edges.add(frozenset((("word", w), ("word", t))))
    return len(words), len(edges), len(image_words)


def main():
    root = data_root(sys.argv[1] if len(sys.argv) > 1 else None)
    paths = {
        "usf": root / "usf/usf_free_association_norms.csv",
        "imagenet": root / "imagenet/imagenet_synsets.txt",
        "fine": root / "cifar-100-binary/fine_label_names.txt",
        "coarse": root / "cifar-100-binary/coarse_label_names.txt",
        "test": root / "cifar-100-binary/test.bin",
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        sys.exit("data missing (pass DATA_ROOT or set $HARNESS_DATA): " + ", ".join(missing))

    usf = load_usf(paths["usf"])
    vocab = {w for c, t, _ in usf for w in (c, t)}
    # imagenet_synsets.txt: index<TAB>wnid<TAB>name, in index order.
    imagenet = [l.split("\t")[2].strip() for l in read_lines(paths["imagenet"])]
    fine, coarse = read_lines(paths["fine"]), read_lines(paths["coarse"])
    if (len(imagenet), len(fine), len(coarse)) != (1000, 100, 20):
        sys.exit(f"expected 1000/100/20 labels, got {len(imagenet)}/{len(fine)}/{len(coarse)}")

    print("imagenet_labels_covered", covered(imagenet, vocab))
    print("fine_names_covered", covered(fine, vocab))
    print("coarse_names_covered", covered(coarse, vocab))
    n_words, n_edges, n_images = label_graph(paths["test"], fine, coarse, usf)
    if n_images != 10000:
        sys.exit(f"{paths['test']}: {n_images} records, expected 10000")
    print("label_graph_words", n_words)
    print("label_graph_edges", n_edges)


if __name__ == "__main__":
    main()
