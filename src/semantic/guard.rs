//! The lexical guard: cheap, exact checks that veto a semantic match the embedding
//! cannot be trusted with. Near-duplicates that differ in one number, one negation or
//! one opposite word embed almost identically yet need different answers.
//!
//! `lexical_guard(a, b)` is true when the two texts *may* share an answer. It is false
//! when any of these differ between them:
//! 1. numbers, identifiers containing digits and number words ("2", "gpt-4o", "9am",
//!    "two"), and dates/times by name (weekdays, months, am/pm, today/tomorrow), as
//!    multisets;
//! 2. quoted strings ("…", '…', `…`, “…”), as sets, case-sensitive;
//! 3. negation markers ("not", "n't", "no", "never", "without", "non", …), as multisets;
//! 4. an opposite pair across the two texts: a word only in one and a word only in the
//!    other that are WordNet antonyms (direct antonyms, data/wordnet/antonyms.txt), a
//!    closed-class direction pair WordNet does not list (before/after, in/out, to/from,
//!    add/remove, …), or one word being the other with a negating prefix (un-, non-,
//!    in-, dis-: "safe"/"unsafe");
//! 5. a two-sided proper-noun substitution: each text has a capitalized word (not the
//!    first word) that the other lacks ("Croydon"/"Guildford"), spelling slips aside;
//! 6. direction anchors: the word after "from", "to", "into", "than", "vs" differs while
//!    both texts use that anchor ("from MySQL to Postgres" / "from Postgres to MySQL").

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;

use regex::Regex;

static ANTONYMS: LazyLock<HashSet<(&'static str, &'static str)>> = LazyLock::new(|| {
    let mut set = HashSet::new();
    let lines = include_str!("../../data/wordnet/antonyms.txt").lines();
    for (a, b) in lines
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
    {
        set.insert((a, b));
    }
    for (a, b) in DIRECTION_PAIRS {
        set.insert(if a < b { (a, b) } else { (b, a) });
    }
    set
});

/// Opposites among function words and common verbs that WordNet's antonym pointers do
/// not cover (its prepositions are not in the database).
const DIRECTION_PAIRS: [(&str, &str); 22] = [
    ("after", "before"),
    ("in", "out"),
    ("into", "out"),
    ("from", "to"),
    ("up", "down"),
    ("over", "under"),
    ("add", "remove"),
    ("enable", "disable"),
    ("include", "exclude"),
    ("import", "export"),
    ("upload", "download"),
    ("asc", "desc"),
    ("min", "max"),
    ("since", "until"),
    ("earliest", "latest"),
    ("oldest", "newest"),
    ("highest", "lowest"),
    ("top", "bottom"),
    ("inbound", "outbound"),
    ("encrypt", "decrypt"),
    ("allow", "block"),
    ("allowed", "banned"),
];

const NEGATIONS: [&str; 14] = [
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "nobody",
    "neither",
    "nor",
    "nowhere",
    "non",
    "unless",
    "except",
    "excluding",
];

const NUMBER_WORDS: [(&str, &str); 34] = [
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("fifteen", "15"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("dozen", "12"),
    ("half", "1/2"),
    ("quarter", "1/4"),
    ("twice", "x2"),
    ("double", "x2"),
    ("triple", "x3"),
    ("first", "1st"),
    ("second", "2nd"),
    ("third", "3rd"),
    ("fourth", "4th"),
    ("single", "1"),
    ("once", "x1"),
];

/// Dates and times by name. "may" (the modal verb) is left out on purpose.
const DATE_WORDS: [&str; 31] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "am",
    "pm",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "night",
    "weekend",
    "weekday",
    "midnight",
];

const NEGATING_PREFIXES: [&str; 7] = ["un", "non", "non-", "in", "im", "dis", "ir"];
const ANCHORS: [&str; 6] = ["from", "to", "into", "than", "vs", "versus"];
/// Skipped when finding the word an anchor points at.
const DETERMINERS: [&str; 9] = ["a", "an", "the", "my", "your", "our", "their", "his", "her"];

static WORD: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| {
    Regex::new(r"\p{N}+(?:[.,:/]\p{N}+)*[\p{L}\p{N}]*|[\p{L}\p{N}]+(?:['\-][\p{L}\p{N}]+)*")
});
static QUOTED: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| {
    Regex::new(r#""([^"]+)"|“([^”]+)”|`([^`]+)`|‘([^’]+)’|(?:^|\s)'([^']+)'(?:$|[\s.,;:!?])"#)
});

/// True when `a` and `b` may share an answer (no lexical signal says otherwise).
pub fn lexical_guard(a: &str, b: &str) -> bool {
    let (ta, tb) = (Text::new(a), Text::new(b));
    ta.numbers == tb.numbers
        && quoted(a) == quoted(b)
        && ta.negations == tb.negations
        && !opposite_pair(&ta, &tb)
        && !proper_noun_swap(&ta, &tb)
        && anchors_agree(&ta, &tb)
}

/// One text's tokens and the classes the rules compare.
struct Text {
    /// Lower-cased words in order, hyphenated compounds split into their parts.
    words: Vec<String>,
    /// Compounds and parts, lower-cased (for set differences).
    vocab: BTreeSet<String>,
    /// Capitalized words other than the first word and "I", lower-cased.
    proper: BTreeSet<String>,
    numbers: BTreeMap<String, usize>,
    negations: BTreeMap<String, usize>,
}

impl Text {
    fn new(text: &str) -> Self {
        let text = text.replace(['’', '‘'], "'");
        let mut t = Text {
            words: Vec::new(),
            vocab: BTreeSet::new(),
            proper: BTreeSet::new(),
            numbers: BTreeMap::new(),
            negations: BTreeMap::new(),
        };
        let Ok(word_re) = &*WORD else {
            return t;
        };
        for (i, m) in word_re.find_iter(&text).enumerate() {
            let raw = m.as_str();
            let lower = raw.to_lowercase();
            if i > 0 && raw != "I" && raw.chars().next().is_some_and(char::is_uppercase) {
                t.proper.insert(lower.clone());
            }
            if lower.chars().any(|c| c.is_ascii_digit()) {
                *t.numbers.entry(lower.replace(',', "")).or_default() += 1;
                t.vocab.insert(lower.clone());
                t.words.push(lower);
                continue;
            }
            t.vocab.insert(lower.clone());
            for part in lower.split('-') {
                t.classify(part);
                t.vocab.insert(part.to_string());
                t.words.push(part.to_string());
            }
        }
        t
    }

    fn classify(&mut self, word: &str) {
        let singular = word.strip_suffix('s').unwrap_or(word);
        if let Some((_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == word) {
            *self.numbers.entry((*n).to_string()).or_default() += 1;
        } else if DATE_WORDS.contains(&word) || DATE_WORDS.contains(&singular) {
            let key = if DATE_WORDS.contains(&word) {
                word
            } else {
                singular
            };
            *self.numbers.entry(key.to_string()).or_default() += 1;
        }
        let negation = if word.ends_with("n't") || word == "cannot" {
            Some("not")
        } else {
            NEGATIONS.iter().find(|n| **n == word).copied()
        };
        if let Some(n) = negation {
            *self.negations.entry(n.to_string()).or_default() += 1;
        }
    }
}

fn quoted(text: &str) -> BTreeSet<String> {
    let Ok(re) = &*QUOTED else {
        return BTreeSet::new();
    };
    re.captures_iter(text)
        .filter_map(|c| {
            c.iter()
                .skip(1)
                .flatten()
                .next()
                .map(|m| m.as_str().to_string())
        })
        .collect()
}

/// Candidate base forms of an inflected word ("larger" -> "large", "closed" -> "close").
fn lemmas(word: &str) -> Vec<String> {
    let mut out = vec![word.to_string()];
    for (suffix, replacement) in [
        ("ies", "y"),
        ("es", ""),
        ("s", ""),
        ("ied", "y"),
        ("ed", ""),
        ("ed", "e"),
        ("ing", ""),
        ("ing", "e"),
        ("ier", "y"),
        ("er", ""),
        ("er", "e"),
        ("iest", "y"),
        ("est", ""),
        ("est", "e"),
        ("ily", "y"),
        ("ly", ""),
    ] {
        if let Some(stem) = word.strip_suffix(suffix) {
            if stem.len() >= 2 {
                out.push(format!("{stem}{replacement}"));
                // bigger -> big, stopped -> stop
                let bytes = stem.as_bytes();
                if replacement.is_empty()
                    && bytes.len() >= 3
                    && bytes[bytes.len() - 1] == bytes[bytes.len() - 2]
                {
                    out.push(stem[..stem.len() - 1].to_string());
                }
            }
        }
    }
    out
}

fn are_opposites(x: &str, y: &str) -> bool {
    for lx in lemmas(x) {
        for ly in lemmas(y) {
            let key = if lx < ly {
                (lx.as_str(), ly.as_str())
            } else {
                (ly.as_str(), lx.as_str())
            };
            if ANTONYMS.contains(&key) {
                return true;
            }
            for p in NEGATING_PREFIXES {
                if lx.strip_prefix(p) == Some(ly.as_str())
                    || ly.strip_prefix(p) == Some(lx.as_str())
                {
                    return ly.len() >= 3 && lx.len() >= 3;
                }
            }
        }
    }
    false
}

fn opposite_pair(a: &Text, b: &Text) -> bool {
    let only_a: Vec<&String> = a.vocab.difference(&b.vocab).collect();
    let only_b: Vec<&String> = b.vocab.difference(&a.vocab).collect();
    only_a
        .iter()
        .any(|x| only_b.iter().any(|y| are_opposites(x, y)))
}

/// Spelling slips ("Coloseum", "centre"/"center") are not substitutions.
fn near_spelling(x: &str, y: &str) -> bool {
    let longest = x.chars().count().max(y.chars().count());
    longest >= 5 && strsim::osa_distance(x, y) <= 1
}

fn proper_noun_swap(a: &Text, b: &Text) -> bool {
    let missing = |from: &Text, other: &Text| -> Vec<String> {
        from.proper
            .iter()
            .filter(|p| !other.vocab.contains(*p))
            .filter(|p| !other.vocab.iter().any(|w| near_spelling(p, w)))
            .cloned()
            .collect()
    };
    !missing(a, b).is_empty() && !missing(b, a).is_empty()
}

/// The word each anchor points at (first word after it that is not a determiner).
fn anchor_targets(t: &Text) -> BTreeMap<&'static str, Vec<&str>> {
    let mut out: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for (i, w) in t.words.iter().enumerate() {
        if let Some(anchor) = ANCHORS.iter().find(|a| **a == w.as_str()) {
            let target = t.words[i + 1..]
                .iter()
                .find(|n| !DETERMINERS.contains(&n.as_str()))
                .map_or("", String::as_str);
            out.entry(anchor).or_default().push(target);
        }
    }
    out
}

fn anchors_agree(a: &Text, b: &Text) -> bool {
    let (ta, tb) = (anchor_targets(a), anchor_targets(b));
    ta.iter().all(|(anchor, targets)| match tb.get(anchor) {
        Some(other) => {
            let mut x = targets.clone();
            let mut y = other.clone();
            x.sort_unstable();
            y.sort_unstable();
            // Same anchor, different objects, and the objects are words both texts
            // use: a reordering ("from A to B" / "from B to A") rather than a rewording.
            x == y
                || !x
                    .iter()
                    .chain(&y)
                    .all(|w| a.vocab.contains(*w) && b.vocab.contains(*w))
        }
        None => true,
    })
}

#[cfg(test)]
mod tests {
    use super::lexical_guard;

    fn same(a: &str, b: &str) {
        assert!(lexical_guard(a, b), "should pass: {a:?} / {b:?}");
        assert!(lexical_guard(b, a), "should pass (swapped): {b:?} / {a:?}");
    }

    fn differ(a: &str, b: &str) {
        assert!(!lexical_guard(a, b), "should veto: {a:?} / {b:?}");
        assert!(!lexical_guard(b, a), "should veto (swapped): {b:?} / {a:?}");
    }

    #[test]
    fn paraphrases_and_near_repeats_pass() {
        same(
            "How do I reset my password?",
            "What are the steps to reset my password?",
        );
        same("Can I pay with PayPal?", "Do you accept PayPal?");
        same(
            "Can I add my partner to my car insurance policy?",
            "To my car insurance policy, can I add my partner?",
        );
        same(
            "What time does the leisure centre open on Mondays?",
            "What time does the leisure center open on Mondays?",
        );
        same(
            "How do I change the currency on my invoices?",
            "Hi team, how do I change the currency on my invoices?",
        );
        same(
            "Can I change the name on my flight ticket?",
            "so um can i change the name on my flight ticket",
        );
    }

    #[test]
    fn numbers_and_identifiers_must_match() {
        differ(
            "Is a 2-bedroom flat available?",
            "Is a 3-bedroom flat available?",
        );
        differ(
            "How much is the Pro plan for 5 users?",
            "How much is the Pro plan for 50 users?",
        );
        differ("Explain gpt-4o pricing", "Explain gpt-4 pricing");
        differ("If I earn £40,000", "If I earn £300,000");
        differ("I've worked here two years", "I've worked here a year");
        same("I have 2 cats", "I own two cats");
        same("If I earn £40,000", "If I earn £40000");
    }

    #[test]
    fn dates_and_times_must_match() {
        differ("Are you open on Saturday?", "Are you open on Sunday?");
        differ(
            "How much is a call-out at 2pm?",
            "How much is a call-out at 2am?",
        );
        differ("Is the store open at 9 am?", "Is the store open at 9 pm?");
        differ("Book it for tomorrow", "Book it for today");
        same("Are you open on Sundays?", "Is the shop open on Sunday?");
    }

    #[test]
    fn quoted_strings_must_match() {
        differ(
            r#"Translate "good morning" to French"#,
            r#"Translate "good night" to French"#,
        );
        differ("What does `ls -la` do?", "What does `ls -lh` do?");
        differ("Spell 'colour' for me", "Spell 'color' for me");
        same(
            r#"What does "idempotent" mean?"#,
            r#"Explain the meaning of "idempotent""#,
        );
        same("Don't say it's fine", "Do not say it's fine");
    }

    #[test]
    fn negations_must_match() {
        differ("Cancel my subscription", "Don't cancel my subscription");
        differ(
            "Which plans include calls?",
            "Which plans do not include calls?",
        );
        differ(
            "Can I travel with a passport?",
            "Can I travel without a passport?",
        );
        differ("Is there a fee?", "Is there no fee?");
        differ("Have you ever been late?", "Have you never been late?");
        same("Why can't I log in?", "Why cannot I log in?");
    }

    #[test]
    fn wordnet_antonyms_veto() {
        differ(
            "Is the clinic open on Sundays?",
            "Is the clinic closed on Sundays?",
        );
        differ(
            "Sort the list in ascending order",
            "Sort the list in descending order",
        );
        differ("Turn left at the bank", "Turn right at the bank");
        differ("Is the answer right?", "Is the answer wrong?");
    }

    #[test]
    fn inflected_antonyms_veto() {
        differ("Which box is larger?", "Which box is smaller?");
        differ(
            "What's the most popular dish?",
            "What's the least popular dish?",
        );
        differ("Is the rent increasing?", "Is the rent decreasing?");
    }

    #[test]
    fn negating_prefixes_veto() {
        differ(
            "Is ibuprofen safe with alcohol?",
            "Is ibuprofen unsafe with alcohol?",
        );
        differ(
            "Is the deposit refundable?",
            "Is the deposit non-refundable?",
        );
        differ("Is this allowed?", "Is this disallowed?");
    }

    #[test]
    fn direction_words_veto() {
        differ(
            "Should I eat before surgery?",
            "Should I eat after surgery?",
        );
        differ("What's the check-in time?", "What's the check-out time?");
        differ(
            "How do I add a user to the workspace?",
            "How do I remove a user from the workspace?",
        );
        differ(
            "How do I turn on two-factor authentication?",
            "How do I turn off two-factor authentication?",
        );
        differ(
            "How much holiday do full-time staff get?",
            "How much holiday do part-time staff get?",
        );
    }

    #[test]
    fn proper_noun_swaps_veto() {
        differ(
            "Do your plumbers cover Croydon?",
            "Do your plumbers cover Guildford?",
        );
        differ(
            "What's the tuition fee in England?",
            "What's the tuition fee in Scotland?",
        );
        differ(
            "What's the legal drinking age in the UK?",
            "What's the legal drinking age in the US?",
        );
        // One-sided additions and spelling slips are not swaps.
        same(
            "How do I update the app on Android?",
            "How do I update the app on my Android phone?",
        );
        same(
            "When does the Colosseum open?",
            "When does the Coloseum open?",
        );
        // A misspelled weekday is no longer recognized as a date: vetoed (conservative).
        differ(
            "What time do you open on Mondays?",
            "What time do you open on Mondys?",
        );
    }

    #[test]
    fn reordered_direction_anchors_veto() {
        differ(
            "How do I migrate from MySQL to Postgres?",
            "How do I migrate from Postgres to MySQL?",
        );
        differ(
            "How do I convert a Word document to PDF?",
            "How do I convert a PDF to a Word document?",
        );
        differ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?");
    }
}
