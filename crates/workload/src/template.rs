//! Prompt templates of the datasets.

/// Alpaca's template for records with an input (`PROMPT_DICT` of Stanford Alpaca's `train.py`,
/// as in its README).
pub const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides \
further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n\
### Input:\n{input}\n\n### Response:";

/// Alpaca's template for records without an input.
pub const ALPACA_NO_INPUT: &str =
    "Below is an instruction that describes a task. Write a response that appropriately \
completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:";

/// Appended to GSM8K questions with `--gsm8k-instruction`, so that answers end in the form the
/// reference uses and can be scored.
pub const GSM8K_INSTRUCTION: &str =
    "\nSolve the problem step by step. Then write the final answer as a number on its own line after \"#### \".";

pub fn alpaca(instruction: &str, input: &str) -> String {
    if input.is_empty() {
        ALPACA_NO_INPUT.replace("{instruction}", instruction)
    } else {
        ALPACA_WITH_INPUT
            .replace("{instruction}", instruction)
            .replace("{input}", input)
    }
}

pub fn gsm8k(question: &str, instruction: bool) -> String {
    if instruction {
        format!("{question}{GSM8K_INSTRUCTION}")
    } else {
        question.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpaca_templates_match_upstream() {
        assert_eq!(
            alpaca("Add the numbers.", ""),
            "Below is an instruction that describes a task. Write a response that appropriately completes the \
             request.\n\n### Instruction:\nAdd the numbers.\n\n### Response:"
        );
        let with = alpaca("Add the numbers.", "2, 3");
        assert!(with.contains("paired with an input that provides further context."));
        assert!(with.ends_with("### Input:\n2, 3\n\n### Response:"));
    }
}
