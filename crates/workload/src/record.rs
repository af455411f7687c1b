//! What a dataset yields: prompts with their references.

use serde::{Deserialize, Serialize};

/// One prompt of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Position in the loaded dataset (0-based); stable for a given file and split.
    pub index: usize,
    /// The prompt text, with the dataset's template applied.
    pub prompt: String,
    /// The reference answer, where the dataset has one (GSM8K: the full worked answer).
    pub reference: Option<String>,
    /// Generation length requested for this prompt (synthetic datasets).
    pub max_new_tokens: Option<u32>,
    /// Exact prompt tokens (synthetic datasets), in the tokenizer that built them.
    pub prompt_tokens: Option<Vec<u32>>,
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Canonical name: `alpaca`, `gsm8k`, `sharegpt`, `jsonl`, `csv`, `hf:ORG/NAME`, `synthetic`.
    pub name: String,
    /// Where it was loaded from (a path, `bundled`, a hub cache path, or a synthetic spec).
    pub source: String,
    pub records: Vec<PromptRecord>,
    /// Records that were skipped because they hold no prompt (ShareGPT conversations without a
    /// human turn), counted so that nothing disappears silently.
    pub skipped: usize,
}

/// The final answer of a GSM8K reference: the text after the last `#### `, trimmed.
pub fn gsm8k_final_answer(answer: &str) -> Option<&str> {
    answer.rsplit_once("#### ").map(|(_, a)| a.trim())
}

/// Word count as the paper defines it: the number of pieces when the text is split on the space
/// character (as Python's `str.split(" ")`), so consecutive spaces count empty words; an empty text
/// has no words.
pub fn words_paper(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        text.split(' ').count()
    }
}

/// Word count by Unicode whitespace, ignoring empty pieces.
pub fn words_unicode(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_the_paper_and_unicode() {
        assert_eq!(words_paper("The answer is 42."), 4);
        assert_eq!(words_paper("a  b"), 3);
        assert_eq!(words_paper(""), 0);
        assert_eq!(words_paper("line one\nline two"), 3);
        assert_eq!(words_unicode("line one\nline  two"), 4);
    }

    #[test]
    fn gsm8k_answer_after_the_last_marker() {
        assert_eq!(gsm8k_final_answer("x #### 3\n#### 1,000"), Some("1,000"));
        assert_eq!(gsm8k_final_answer("no marker"), None);
    }
}
