"""Write the small generated data sets of ``examples/minilm-ner.yaml`` and ``examples/minilm-qa.yaml``.

    python examples/span_data.py [--seed 0] [--train 400] [--eval 80]

``ner/``: sentences from templates with people (PER), cities (LOC) and companies (ORG), one word per
token and a BIO tag per word (CoNLL-2003's schema: ``{"tokens": [...], "tags": [...]}``).
``qa/``: short biographies stating where a person was born, what they work as and when they
married, in any order among other sentences; the question asks for one of the three (SQuAD's
schema: ``{"context", "question", "answers": {"text": [...], "answer_start": [...]}}``).
In both, the validation and test records use names, cities and companies no training record
contains, so the scores measure tagging and reading, not remembering names.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

FIRST = ("Alice Bob Carol Dmitri Elena Farhan Grace Hiroshi Ingrid Jamal Katarzyna Luis Mei Nikolai Olga Priya "
         "Quentin Rosalind Sven Tatiana Ugo Valentina Wei Ximena Yusuf Zofia Amara Bruno Chloe Diego").split()
LAST = ("Smith Okafor Nakamura Kowalski Haddad Lindqvist Moreau Petrov Santos Zhang Novak Mensah Ferreira "
        "Tanaka Olsen Costa").split()
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "New York", "San Francisco", "Buenos Aires", "Oslo", "Hanoi", "Cairo",
          "Rio de Janeiro", "Nairobi", "Krakow", "Quito", "Hong Kong", "Tbilisi"]
ORGS = ["Acme", "Globex", "Initech", "Umbrella Corp", "Stark Industries", "Wayne Enterprises", "Hooli", "Vandelay",
        "Soylent", "Tyrell Corporation", "Cyberdyne", "Aperture Labs"]
JOBS = ["doctor", "teacher", "pilot", "chef", "painter", "lawyer", "farmer", "baker", "nurse", "engineer"]
NER_TEMPLATES = [
    "{P} lives in {C} .", "{P} visited {C} yesterday .", "In {C} , {P} met {Q} .", "{P} works for {O} in {C} .",
    "{O} hired {P} last spring .", "{P} and {Q} moved to {C} last year .", "the mayor of {C} is {P} .",
    "{P} wrote to {Q} from {C} .", "{O} opened an office in {C} .", "shares of {O} rose after {P} spoke .",
    "{P} left {O} to join {O2} .", "a spokesperson for {O} said {P} will visit {C} ."]
FACTS = {"city": ("{P} was born in {A} .", "Where was {P} born ?"),
         "job": ("{P} works as a {A} .", "What does {P} do for a living ?"),
         "year": ("{P} married in {A} .", "When did {P} get married ?")}
OTHER = ("{P} likes {X} .", "{P} has a {Y} .", "{P} often reads about {X} .", "On weekends {P} plays {X} .")


def pools(part: str) -> dict[str, list[str]]:
    """Names for ``part``: train takes every other name, val/test the rest (disjoint)."""
    k = 0 if part == "train" else 1
    return {"first": FIRST[k::2], "last": LAST[k::2], "cities": CITIES[k::2], "orgs": ORGS[k::2]}


def person(rng: random.Random, p: dict[str, list[str]]) -> str:
    return rng.choice(p["first"]) + (f" {rng.choice(p['last'])}" if rng.random() < 0.6 else "")


def ner(n: int, rng: random.Random, p: dict[str, list[str]]) -> list[dict]:
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for part in rng.choice(NER_TEMPLATES).split():
            slot = {"{P}": "PER", "{Q}": "PER", "{C}": "LOC", "{O}": "ORG", "{O2}": "ORG"}.get(part)
            if slot is None:
                tokens.append(part)
                tags.append("O")
                continue
            name = {"PER": lambda: person(rng, p), "LOC": lambda: rng.choice(p["cities"]),
                    "ORG": lambda: rng.choice(p["orgs"])}[slot]().split()
            tokens += name
            tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(name) - 1)
        out.append({"tokens": tokens, "tags": tags})
    return out


def qa(n: int, rng: random.Random, p: dict[str, list[str]]) -> list[dict]:
    out = []
    for _ in range(n):
        who = person(rng, p)
        facts = {"city": rng.choice(p["cities"]), "job": rng.choice(JOBS), "year": str(rng.randint(1950, 2015))}
        sentences = [FACTS[k][0].format(P=who, A=v) for k, v in facts.items()]
        sentences += [s.format(P=who, X=rng.choice(["chess", "tennis", "music", "history"]),
                               Y=rng.choice(["dog", "cat", "bicycle"])) for s in rng.sample(OTHER, 2)]
        rng.shuffle(sentences)
        context = " ".join(sentences)
        what = rng.choice(list(FACTS))
        fact = FACTS[what][0].format(P=who, A=facts[what])
        start = context.index(fact) + fact.index(f" {facts[what]} ") + 1
        out.append({"context": context, "question": FACTS[what][1].format(P=who),
                    "answers": {"text": [facts[what]], "answer_start": [start]}})
    return out


def write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--eval", type=int, default=80, help="records in each of val and test")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for kind, make in (("ner", ner), ("qa", qa)):
        for part in ("train", "val", "test"):
            write(make(a.train if part == "train" else a.eval, rng, pools(part)), a.out / kind / f"{kind}-{part}.jsonl")
    print(f"wrote {a.out / 'ner'} and {a.out / 'qa'}")


if __name__ == "__main__":
    main()
