#!/usr/bin/env python3
"""Clustering quality benchmark: the engine vs scikit-learn on labelled text, same texts, same run.

Corpora (installed at benchmark time, never committed):
  foldoc    FOLDOC dictionary entries (Debian dict-foldoc) labelled by their single domain tag.
  debian    Debian package descriptions (apt-cache dumpavail) labelled by section.
  synthetic The project's synthetic failure-theme set (bench/clustering/synthetic_failures.h).

Both sides cluster at the true number of classes. scikit-learn baseline (the LSA recipe of its
documentation): TfidfVectorizer(sublinear_tf, English stop words, min_df=2, max_df=0.5) ->
TruncatedSVD(100) -> Normalizer -> KMeans(n_init=10). Metrics: V-measure, adjusted Rand index and
matched accuracy (Hungarian one-to-one matching of themes to labels), mean over the seeds.
"""
import argparse
import collections
import gzip
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, v_measure_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

FOLDOC_DOMAINS = ["language", "networking", "programming", "jargon", "operating system",
                  "company", "hardware", "mathematics", "storage", "database", "person", "web"]
DEBIAN_SECTIONS = ["games", "science", "sound", "graphics", "fonts", "mail", "database",
                   "editors", "electronics", "hamradio", "math", "video", "httpd", "kernel",
                   "tex", "vcs"]


def balanced(items, per_class, seed):
    by_label = collections.defaultdict(list)
    for label, text in items:
        by_label[label].append(text)
    rng = random.Random(seed)
    out = []
    for label in sorted(by_label):
        texts = sorted(set(by_label[label]))
        rng.shuffle(texts)
        out.extend((label, t) for t in texts[:per_class])
    rng.shuffle(out)
    return out


def load_foldoc(path, per_class, seed):
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    entries, body = [], None
    for line in lines:
        if line and not line[0].isspace():
            if body:
                entries.append(body)
            body = []
        elif body is not None:
            body.append(line.strip())
    if body:
        entries.append(body)
    items = []
    for body in entries:
        text = " ".join(l for l in body if l)
        m = re.match(r"^<([a-z ]+)>\s*(.*)$", text)
        if not m or m.group(1) not in FOLDOC_DOMAINS:
            continue
        text = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", " ", m.group(2))
        text = text.replace("{", "").replace("}", "")
        text = re.sub(r"\s+", " ", text).strip()[:1000]
        if len(text) >= 40:
            items.append((m.group(1), text))
    return balanced(items, per_class, seed)


def load_debian(per_class, seed):
    dump = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True,
                          check=True).stdout
    items, seen_sources = [], set()
    for stanza in dump.split("\n\n"):
        fields, last = {}, None
        for line in stanza.split("\n"):
            if line.startswith(" ") and last:
                fields[last] += "\n" + line
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        section = fields.get("Section", "").split("/")[-1]
        if section not in DEBIAN_SECTIONS or "Description" not in fields:
            continue
        source = fields.get("Source", fields.get("Package", "")).split(" ")[0]
        if source in seen_sources:
            continue
        seen_sources.add(source)
        desc = fields["Description"].replace("\n .\n", "\n").replace("\n", " ")
        text = re.sub(r"\s+", " ", desc).strip()[:1000]
        items.append((section, text))
    return balanced(items, per_class, seed)


def matched_accuracy(truth, predicted):
    labels = sorted(set(truth))
    clusters = sorted(set(predicted))
    li = {l: i for i, l in enumerate(labels)}
    ci = {c: i for i, c in enumerate(clusters)}
    m = np.zeros((len(clusters), len(labels)))
    for t, p in zip(truth, predicted):
        m[ci[p], li[t]] += 1
    rows, cols = linear_sum_assignment(-m)
    return m[rows, cols].sum() / len(truth)


def metrics(truth, predicted):
    return (v_measure_score(truth, predicted), adjusted_rand_score(truth, predicted),
            matched_accuracy(truth, predicted))


def run_sklearn(texts, k, seed):
    start = time.time()
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2, max_df=0.5)
    x = vectorizer.fit_transform(texts)
    lsa = make_pipeline(TruncatedSVD(n_components=100, random_state=seed), Normalizer(copy=False))
    y = lsa.fit_transform(x)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(y)
    return list(labels), time.time() - start


def run_engine(binary, items, k, seed, extra, workdir):
    tsv = os.path.join(workdir, "texts.tsv")
    out = os.path.join(workdir, "labels.txt")
    with open(tsv, "w", encoding="utf-8") as f:
        for label, text in items:
            f.write(f"{label}\t{text}\n")
    start = time.time()
    subprocess.run([binary, "--input", tsv, "--k", str(k), "--output", out, "--seed", str(seed)]
                   + extra, check=True, stderr=subprocess.DEVNULL)
    elapsed = time.time() - start
    with open(out) as f:
        return [int(l) for l in f.read().split()], elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--corpora", default="foldoc,debian,synthetic")
    parser.add_argument("--per_class", type=int, default=150)
    parser.add_argument("--synthetic_count", type=int, default=6000)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--foldoc", default="/usr/share/dictd/foldoc.dict.dz")
    parser.add_argument("--engine_args", default="", help="extra flags for the engine binary")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.engine_args.split()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for corpus in args.corpora.split(","):
            if corpus == "foldoc":
                items = load_foldoc(args.foldoc, args.per_class, 1)
            elif corpus == "debian":
                items = load_debian(args.per_class, 1)
            elif corpus == "synthetic":
                path = os.path.join(workdir, "synthetic.tsv")
                subprocess.run([args.binary, "--synthetic", str(args.synthetic_count), "--seed",
                                "7", "--output", path], check=True)
                with open(path, encoding="utf-8") as f:
                    items = [tuple(l.rstrip("\n").split("\t", 1)) for l in f if "\t" in l]
            else:
                sys.exit(f"unknown corpus {corpus}")
            truth = [label for label, _ in items]
            texts = [text for _, text in items]
            k = len(set(truth))
            results = {"engine": [], "sklearn": []}
            times = {"engine": 0.0, "sklearn": 0.0}
            for seed in seeds:
                labels, t = run_engine(args.binary, items, k, seed, extra, workdir)
                results["engine"].append(metrics(truth, labels))
                times["engine"] += t
                labels, t = run_sklearn(texts, k, seed)
                results["sklearn"].append(metrics(truth, labels))
                times["sklearn"] += t
            for side in ("engine", "sklearn"):
                mean = np.mean(results[side], axis=0)
                rows.append((corpus, len(items), k, side, *mean, times[side] / len(seeds)))
    print(f"{'corpus':10} {'texts':>6} {'k':>3} {'system':8} {'V-measure':>9} {'ARI':>6} "
          f"{'matched':>7} {'seconds':>7}")
    for corpus, n, k, side, v, ari, acc, secs in rows:
        print(f"{corpus:10} {n:6d} {k:3d} {side:8} {v:9.3f} {ari:6.3f} {acc:7.3f} {secs:7.1f}")
    by = {(r[0], r[3]): r for r in rows}
    for corpus in args.corpora.split(","):
        if (corpus, "engine") in by and (corpus, "sklearn") in by:
            delta = by[(corpus, "engine")][4] - by[(corpus, "sklearn")][4]
            print(f"{corpus}: V-measure engine - sklearn = {delta:+.3f}")


if __name__ == "__main__":
    main()
