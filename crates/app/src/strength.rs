//! How hard a passphrase is to guess (`POST /api/strength`, docs/APP.md §1.1): zxcvbn's score
//! (0..4) and its feedback as catalogue keys (`assets/i18n/*.json`), so the page words them in
//! the user's language. IO-free; the server runs it off the async threads.
//!
//! # What it reveals, and to whom
//!
//! The answer goes to the page that asked, which typed the passphrase: it learns nothing it did
//! not have. Nothing is logged and nothing kept: the body and the parsed passphrase are
//! zeroized when dropped (zxcvbn's own working copies of pieces of it are not: only a reader of
//! this process's memory could use them, as with hyper's read buffers). A hostile page on
//! another origin cannot reach it (the gate refuses cross-site requests and non-JSON types,
//! and the cookie is `SameSite=Strict`), and could not read the answer if it did.
//!
//! # Bounds
//!
//! The body is at most [`crate::MAX_BODY`]; only the first [`SCORED_CHARS`] characters are
//! scored (zxcvbn's matching grows faster than the length, and a passphrase that long scores 4
//! anyway); the server answers at most [`PER_SECOND`] a second (the page asks once per 300 ms of
//! typing pause).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;
use zxcvbn::feedback::{Suggestion, Warning};

/// Characters scored; the rest only makes a passphrase longer, which scores no lower.
pub(crate) const SCORED_CHARS: usize = 100;

/// Estimates answered a second, at most (more: 429).
pub(crate) const PER_SECOND: u32 = 10;

/// The request's body.
#[derive(Deserialize)]
pub(crate) struct Ask {
    #[serde(deserialize_with = "zeroized")]
    passphrase: Zeroizing<String>,
}

fn zeroized<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// The answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// 0 (guessed at once) to 4 (very hard); the page requires 3.
    pub(crate) score: u8,
    /// The main problem, as a catalogue key.
    pub(crate) warning: Option<&'static str>,
    /// What would help, as catalogue keys (no repeats).
    pub(crate) suggestions: Vec<&'static str>,
}

/// Parses a body (`{"passphrase":…}`) and estimates it; `None` if it is not that.
pub(crate) fn answer(body: &[u8]) -> Option<Estimate> {
    let ask: Ask = serde_json::from_slice(body).ok()?;
    Some(estimate(&ask.passphrase))
}

/// The estimate for `passphrase`.
pub(crate) fn estimate(passphrase: &str) -> Estimate {
    let scored = match passphrase.char_indices().nth(SCORED_CHARS) {
        Some((i, _)) => &passphrase[..i],
        None => passphrase,
    };
    let e = zxcvbn::zxcvbn(scored, &[]);
    let mut suggestions = Vec::new();
    let mut warning = None;
    if let Some(f) = e.feedback() {
        warning = f.warning().map(warning_key);
        for s in f.suggestions() {
            let k = suggestion_key(*s);
            if !suggestions.contains(&k) {
                suggestions.push(k);
            }
        }
    }
    Estimate { score: u8::from(e.score()), warning, suggestions }
}

/// Every key [`estimate`] can answer (a test checks the catalogues have them).
#[cfg(test)]
pub(crate) const KEYS: [&str; 16] = [
    "strength_warning_keyboard",
    "strength_warning_repeats",
    "strength_warning_common",
    "strength_warning_sequence",
    "strength_warning_dates",
    "strength_warning_word",
    "strength_warning_names",
    "strength_suggest_words",
    "strength_suggest_no_symbols",
    "strength_suggest_capitals",
    "strength_suggest_reversed",
    "strength_suggest_substitutions",
    "strength_suggest_keyboard",
    "strength_suggest_repeats",
    "strength_suggest_sequences",
    "strength_suggest_dates",
];

fn warning_key(w: Warning) -> &'static str {
    match w {
        Warning::StraightRowsOfKeysAreEasyToGuess | Warning::ShortKeyboardPatternsAreEasyToGuess => {
            "strength_warning_keyboard"
        }
        Warning::RepeatsLikeAaaAreEasyToGuess | Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => {
            "strength_warning_repeats"
        }
        Warning::ThisIsATop10Password
        | Warning::ThisIsATop100Password
        | Warning::ThisIsACommonPassword
        | Warning::ThisIsSimilarToACommonlyUsedPassword => "strength_warning_common",
        Warning::SequencesLikeAbcAreEasyToGuess => "strength_warning_sequence",
        Warning::RecentYearsAreEasyToGuess | Warning::DatesAreOftenEasyToGuess => "strength_warning_dates",
        Warning::AWordByItselfIsEasyToGuess => "strength_warning_word",
        Warning::NamesAndSurnamesByThemselvesAreEasyToGuess
        | Warning::CommonNamesAndSurnamesAreEasyToGuess => "strength_warning_names",
    }
}

fn suggestion_key(s: Suggestion) -> &'static str {
    match s {
        Suggestion::UseAFewWordsAvoidCommonPhrases | Suggestion::AddAnotherWordOrTwo => {
            "strength_suggest_words"
        }
        Suggestion::NoNeedForSymbolsDigitsOrUppercaseLetters => "strength_suggest_no_symbols",
        Suggestion::CapitalizationDoesntHelpVeryMuch
        | Suggestion::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase => "strength_suggest_capitals",
        Suggestion::ReversedWordsArentMuchHarderToGuess => "strength_suggest_reversed",
        Suggestion::PredictableSubstitutionsDontHelpVeryMuch => "strength_suggest_substitutions",
        Suggestion::UseALongerKeyboardPatternWithMoreTurns => "strength_suggest_keyboard",
        Suggestion::AvoidRepeatedWordsAndCharacters => "strength_suggest_repeats",
        Suggestion::AvoidSequences => "strength_suggest_sequences",
        Suggestion::AvoidRecentYears
        | Suggestion::AvoidYearsThatAreAssociatedWithYou
        | Suggestion::AvoidDatesAndYearsThatAreAssociatedWithYou => "strength_suggest_dates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_score_low_and_say_why() {
        let e = estimate("password");
        assert_eq!(e.score, 0);
        assert_eq!(e.warning, Some("strength_warning_common"));
        assert!(!e.suggestions.is_empty());
        let e = estimate("qwertyuiop");
        assert!(e.score <= 1, "{e:?}");
        assert!(e.warning.is_some(), "{e:?}");
        assert_eq!(estimate("").score, 0);
    }

    #[test]
    fn several_unrelated_words_score_high() {
        let e = estimate("correct horse battery staple lantern");
        assert!(e.score >= 3, "{e:?}");
        assert_eq!(e.warning, None);
    }

    #[test]
    fn a_very_long_passphrase_is_scored_on_its_beginning_and_quickly() {
        let long = "abcdefghij".repeat(6000);
        let t = std::time::Instant::now();
        let _ = estimate(&long);
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
        // Arabic letters are several bytes: the cut falls on a character's edge.
        let _ = estimate(&"ق".repeat(500));
    }

    #[test]
    fn a_body_is_a_passphrase_or_nothing() {
        assert_eq!(answer(br#"{"passphrase":"password"}"#).map(|e| e.score), Some(0));
        assert!(answer(br#"{"pass":"x"}"#).is_none());
        assert!(answer(b"password").is_none());
    }

    #[test]
    fn every_key_has_words_in_every_catalogue_and_every_variant_maps_to_a_key() {
        for lang in [
            include_str!("../assets/i18n/en.json"),
            include_str!("../assets/i18n/fr.json"),
            include_str!("../assets/i18n/ar.json"),
        ] {
            let cat: serde_json::Map<String, serde_json::Value> = serde_json::from_str(lang).unwrap();
            for k in KEYS {
                assert!(cat.contains_key(k), "{k}");
            }
        }
        for p in [
            "password",
            "qwertyuiop",
            "aaaaaa",
            "abcabcabc",
            "abcdef",
            "2019",
            "12/05/1988",
            "smith",
            "Tr0ub4dour",
        ] {
            let e = estimate(p);
            assert!(e.warning.is_none_or(|w| KEYS.contains(&w)), "{p}");
            assert!(e.suggestions.iter().all(|s| KEYS.contains(s)), "{p}");
        }
    }
}
