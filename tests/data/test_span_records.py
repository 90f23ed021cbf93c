"""``token_classify`` and ``extractive_qa`` rows of the records source: a word's tag on its first
sub-token only, answers located through character offsets, the formats each schema reads, and
one-line errors. The generators and the tiny WordPiece BERT here serve the task tests too."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
import torch

from liandan.data import build_data
from liandan.data.spans import qa_table
from liandan.data.text import IGNORE
from liandan.errors import LiandanError
from liandan.models.hf_pretrained import load_tokenizer
from liandan.recipe import DataConfig

FIRST = ("Alice Bob Carol Dmitri Elena Farhan Grace Hiroshi Ingrid Jamal Katarzyna Luis Mei Nikolai Olga Priya "
         "Quentin Rosalind Sven Tatiana").split()
LAST = "Smith Okafor Nakamura Kowalski Haddad Lindqvist Moreau Petrov Santos Zhang".split()
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "New York", "San Francisco", "Buenos Aires", "Oslo", "Hanoi", "Cairo"]
JOBS = ["doctor", "teacher", "pilot", "chef", "painter", "lawyer", "farmer", "baker"]
NER_TEMPLATES = ["{P} lives in {C} .", "{P} visited {C} yesterday .", "In {C} , {P} met {Q} .",
                 "{P} and {Q} moved to {C} last year .", "the mayor of {C} is {P} .", "{P} wrote to {Q} from {C} ."]


def _person(rng: random.Random, first: list[str] = FIRST, last: list[str] = LAST) -> list[str]:
    return [rng.choice(first)] + ([rng.choice(last)] if rng.random() < 0.6 else [])


def ner_records(n: int, seed: int = 0, names: slice = slice(None)) -> list[dict]:
    """Template sentences with people (PER, one or two words) and cities (LOC), BIO-tagged; ``names``
    picks the part of the name lists used (disjoint slices: test names training never shows)."""
    rng = random.Random(seed)
    first, last, cities = FIRST[names], LAST[names], CITIES[names]
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for part in rng.choice(NER_TEMPLATES).split():
            if part in ("{P}", "{Q}", "{C}"):
                words = rng.choice(cities).split() if part == "{C}" else _person(rng, first, last)
                kind = "LOC" if part == "{C}" else "PER"
                tokens += words
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
            else:
                tokens.append(part)
                tags.append("O")
        out.append({"tokens": tokens, "tags": tags})
    return out


QA_FACTS = {"city": ("{P} was born in {A} .", "Where was {P} born ?"),
            "job": ("{P} works as a {A} .", "What does {P} work as ?"),
            "year": ("{P} married in {A} .", "When did {P} marry ?")}
FILLERS = ("{P} likes {X} .", "{P} has a {Y} .", "{P} often reads about {X} .")


def qa_records(n: int, seed: int = 0, squad: bool = True) -> list[dict]:
    """Templated contexts: one fact about a person (a city, a job or a year) among filler sentences,
    in any order; the question asks for the fact. SQuAD-style records give a city two gold answers
    (``Lima`` and ``in Lima``); flat ones give the first as ``answer``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = " ".join(_person(rng))
        what = rng.choice(list(QA_FACTS))
        answer = {"city": rng.choice(CITIES), "job": rng.choice(JOBS), "year": str(rng.randint(1900, 2010))}[what]
        fact, question = (t.format(P=p, A=answer) for t in QA_FACTS[what])
        parts = [f.format(P=p, X=rng.choice(["music", "chess", "tennis", "books"]), Y=rng.choice(["dog", "cat", "car"]))
                 for f in rng.sample(FILLERS, 2)] + [fact]
        rng.shuffle(parts)
        context = " ".join(parts)
        start = context.index(fact) + fact.index(f" {answer} ") + 1
        golds = [(answer, start)] + ([(f"in {answer}", start - 3)] if what == "city" else [])
        if squad:
            out.append({"context": context, "question": question,
                        "answers": {"text": [g for g, _ in golds], "answer_start": [s for _, s in golds]}})
        else:
            out.append({"context": context, "question": question, "answer": answer})
    return out


def corpus() -> list[str]:
    return ([" ".join(r["tokens"]) for r in ner_records(300, 99)]
            + [f"{r['question']} {r['context']}" for r in qa_records(300, 99)])


@functools.cache
def bert_tokenizer(vocab: int = 260):
    """A WordPiece tokenizer (BERT's normaliser and pre-tokenizer, lower case) trained on the generated
    text, small enough that names and cities split into several sub-tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials,
                                                                show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def write_bert(root: Path, seed: int = 0) -> Path:
    """``root/bert-wp``: a two-layer, 32-wide BERT encoder (no head) and its WordPiece tokenizer."""
    import transformers as tf

    d = Path(root) / "bert-wp"
    tok = bert_tokenizer()
    torch.manual_seed(seed)
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tf.BertModel(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(write_bert(tmp_path_factory.mktemp("hf")))


def data(tok: str, path: str, task: str, **kw) -> object:
    return build_data(DataConfig(source="records", path=path, tokenizer=tok, batch_size=8, **kw), seed=0, task=task)


def test_ner_tags_go_on_each_words_first_subtoken(bert, tmp_path) -> None:
    rows = ner_records(40)
    dm = data(bert, jsonl(tmp_path / "n.jsonl", rows), "token_classify")
    src, tok = dm.source, load_tokenizer(bert)
    assert src.class_names == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"] and dm.info.num_classes == 5
    split = 0
    for i, r in enumerate(rows):
        enc = tok(r["tokens"], is_split_into_words=True)
        ids = enc["input_ids"]
        assert src.x[i, : len(ids)].tolist() == ids and (src.x[i, len(ids):] == tok.pad_token_id).all()
        want = []
        for k, w in enumerate(enc.word_ids()):
            first = w is not None and (k == 0 or enc.word_ids()[k - 1] != w)
            want.append(src.class_names.index(r["tags"][w]) if first else IGNORE)
        assert src.y[i, : len(ids)].tolist() == want and (src.y[i, len(ids):] == IGNORE).all()
        split += sum(1 for w in set(enc.word_ids()) - {None} if enc.word_ids().count(w) > 1)
        # one label per word, in order: the metrics read words
        labelled = src.y[i][src.y[i] != IGNORE].tolist()
        assert [src.class_names[k] for k in labelled] == r["tags"]
    assert split > 20  # names and cities split into sub-tokens, so "first sub-token only" is exercised


def test_class_label_integer_tags_read_as_their_names(bert, tmp_path) -> None:
    import datasets

    rows = ner_records(30)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]  # CoNLL-2003's order, not sorted
    feats = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                               "tags": datasets.List(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"tokens": [r["tokens"] for r in rows],
                                     "tags": [[names.index(t) for t in r["tags"]] for r in rows]}, features=feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    a = data(bert, str(tmp_path / "saved"), "token_classify").source
    b = data(bert, jsonl(tmp_path / "n.jsonl", rows), "token_classify").source
    assert a.class_names == names  # the ClassLabel's ids stay its own
    assert torch.equal(a.x, b.x)
    tagged = lambda s: [[s.class_names[k] for k in row[row != IGNORE].tolist()] for row in s.y]  # noqa: E731
    assert tagged(a) == tagged(b) == [r["tags"] for r in rows]


def test_fields_are_mapped(bert, tmp_path) -> None:
    rows = [{"words": r["tokens"], "ner": r["tags"]} for r in ner_records(20)]
    src = data(bert, jsonl(tmp_path / "n.jsonl", rows), "token_classify",
               fields={"tokens": "words", "tags": "ner"}).source
    ref = data(bert, jsonl(tmp_path / "m.jsonl", ner_records(20)), "token_classify").source
    assert torch.equal(src.x, ref.x) and torch.equal(src.y, ref.y)


@pytest.mark.parametrize(("row", "msg"), [
    ({"tokens": ["Bob", "ran"], "tags": ["B-PER"]}, "record 5 has 2 tokens but 1 tags"),
    ({"tokens": ["Bob", "ran"], "tags": ["PER", "O"]}, "record 5 has tag 'PER', not a BIO tag"),
    ({"tokens": ["Bob", "ran"], "tags": [1, 0]}, "record 5 has integer tags but the records carry no names"),
    ({"tokens": [], "tags": []}, "record 5 has no tokens"),
])
def test_bad_ner_records_are_one_line_errors(bert, tmp_path, row, msg) -> None:
    with pytest.raises(LiandanError) as e:
        data(bert, jsonl(tmp_path / "n.jsonl", [*ner_records(5), row]), "token_classify")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_one_tag_only_is_refused(bert, tmp_path) -> None:
    with pytest.raises(LiandanError, match="every word is tagged 'O'"):
        data(bert, jsonl(tmp_path / "n.jsonl", [{"tokens": ["it", "ran"], "tags": ["O", "O"]}] * 4), "token_classify")


def test_a_tag_training_never_shows_is_refused(bert, tmp_path) -> None:
    val = jsonl(tmp_path / "v.jsonl", ner_records(5) + [{"tokens": ["Acme", "hired"], "tags": ["B-ORG", "O"]}])
    with pytest.raises(LiandanError, match=r"data.val .*record 5 has tag 'B-ORG', which the training records never"):
        data(bert, jsonl(tmp_path / "n.jsonl", ner_records(20)), "token_classify", val=val)


def test_qa_spans_cut_from_the_context_are_the_answers(bert, tmp_path) -> None:
    rows = qa_records(40)
    dm = data(bert, jsonl(tmp_path / "q.jsonl", rows), "extractive_qa")
    src = dm.source
    assert src.x.dim() == 3 and src.x.shape[1] == 2  # ids and segment ids
    tok = load_tokenizer(bert)
    table = qa_table(int(src.y[0, 2]))
    for i, r in enumerate(rows):
        enc = tok(r["question"], r["context"])
        n = len(enc["input_ids"])
        assert src.x[i, 0, :n].tolist() == enc["input_ids"] and src.x[i, 1, :n].tolist() == enc["token_type_ids"]
        a, b, _, row = src.y[i].tolist()
        assert row == i and enc.sequence_ids()[a] == 1 and enc.sequence_ids()[b] == 1
        assert table.span_text(i, a, b) == r["answers"]["text"][0]
        assert table.answers[i] == r["answers"]["text"] and table.questions[i] == r["question"]
    flat = data(bert, jsonl(tmp_path / "f.jsonl", qa_records(40, squad=False)), "extractive_qa").source
    assert torch.equal(flat.x, src.x) and torch.equal(flat.y[:, [0, 1, 3]], src.y[:, [0, 1, 3]])
    assert qa_table(int(flat.y[0, 2])).answers == [r["answers"]["text"][:1] for r in rows]  # one gold answer each
    again = data(bert, jsonl(tmp_path / "again.jsonl", rows), "extractive_qa").source
    assert torch.equal(again.y, src.y)  # the same records: the same table id


def test_qa_truncation_refuses_or_drops_cut_answers(bert, tmp_path) -> None:
    rows = qa_records(40)
    path = jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(LiandanError, match="more than the model's context of 30"):
        data(bert, path, "extractive_qa", max_len=30)
    dm = data(bert, path, "extractive_qa", max_len=30, truncate=True)
    notes = dm.info.extras["notes"]
    dropped = next(int(n.split()[0]) for n in notes if "dropped" in n)
    assert 0 < dropped < 40 and len(dm.source) + dropped == 40 and dm.source.x.shape[-1] <= 30
    t = qa_table(int(dm.source.y[0, 2]))
    assert all(t.span_text(r, a, b) == t.answers[r][0] for a, b, _, r in dm.source.y.tolist())


@pytest.mark.parametrize(("row", "msg"), [
    ({"context": "Bob lives in Oslo .", "question": "Where ?", "answer": "Lima"}, "'Lima' is not in its context"),
    ({"context": "Bob lives in Oslo .", "question": "Where ?", "answers": {"text": ["Oslo"], "answer_start": [3]}},
     "'Oslo' is not at character 3 of its context"),
    ({"context": "Bob lives in Oslo .", "question": "Where ?", "answers": {"text": [], "answer_start": []}},
     "must be {text: [...], answer_start: [...]}"),
    ({"context": "Bob lives in Oslo .", "question": 3, "answer": "Oslo"}, "field 'question' is int, not text"),
])
def test_bad_qa_records_are_one_line_errors(bert, tmp_path, row, msg) -> None:
    rows = qa_records(5, squad="answers" in row) + [row]
    with pytest.raises(LiandanError) as e:
        data(bert, jsonl(tmp_path / "q.jsonl", rows), "extractive_qa")
    assert "record 5" in str(e.value) and msg in str(e.value) and "\n" not in str(e.value)
