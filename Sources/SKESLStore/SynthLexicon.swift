// Words and sentence templates of the synthetic corpus. Scores are the VADER mean
// ratings of these words in vader_lexicon.txt (vaderSentiment 3.3.2), so that sentiment
// word masking finds them and its target is 0.75 x the score. Every other word of the
// templates is checked absent from the lexicon (SynthTests), so a neutral sentence
// really has no lexicon word. All words are whole tokens of the BERT uncased vocabulary.

public let synthLexicon: [(word: String, score: Float)] = [
    ("good", 1.9), ("great", 3.1), ("love", 3.2), ("amazing", 2.8), ("awesome", 3.1),
    ("excellent", 2.7), ("wonderful", 2.7), ("fantastic", 2.6), ("happy", 2.7), ("best", 3.2),
    ("nice", 1.8), ("enjoy", 2.2), ("fun", 2.3), ("beautiful", 2.9), ("brilliant", 2.8),
    ("perfect", 2.7), ("like", 1.5), ("funny", 1.9), ("glad", 2.0), ("pleasant", 2.3),
    ("superb", 3.1), ("impressive", 2.3), ("fine", 0.8), ("interesting", 1.7), ("cool", 1.3),
    ("sweet", 2.0), ("lovely", 2.8), ("okay", 0.9),
    ("bad", -2.5), ("terrible", -2.1), ("hate", -2.7), ("awful", -2.0), ("horrible", -2.5),
    ("worst", -3.1), ("boring", -1.3), ("sad", -2.1), ("disappointing", -2.2), ("stupid", -2.4),
    ("poor", -2.1), ("annoying", -1.7), ("ugly", -2.3), ("angry", -2.3), ("waste", -1.8),
    ("dull", -1.7), ("weak", -1.9), ("mess", -1.5), ("disappointed", -2.1), ("hated", -3.2),
    ("wrong", -2.1), ("pathetic", -2.7), ("ridiculous", -1.5), ("lame", -1.8), ("crap", -1.6),
    ("nasty", -2.6), ("miserable", -2.2), ("painful", -1.9),
]

/// Templates with one sentiment slot "W".
public let synthSentimentTemplates: [String] = [
    "i think the movie was really W",
    "the acting in this film is W",
    "the story was W and the ending too",
    "it was a W experience overall",
    "the music and the scenes are W",
    "my brother said the plot is W",
    "what a W performance by the lead actor",
    "the second half of the film felt W",
    "we watched it last night and it was W",
    "the cast is W and so is the soundtrack",
]

/// Templates without any lexicon word.
public let synthNeutralTemplates: [String] = [
    "i saw the movie on tuesday with my brother",
    "the film is about a family in a small town",
    "we went to the theater after dinner",
    "the director made three films before this one",
    "the story takes place in the north of the country",
    "it runs for about two hours",
    "the main actor also wrote the script",
    "they filmed most of the scenes in the city",
]
