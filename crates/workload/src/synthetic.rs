//! `synthetic:in=N,out=M`: prompts of exact token lengths, built from the tokenizer's vocabulary.
//!
//! Lengths are fixed (`in=512`), normal (`in=normal(512,128)`, rounded, at least 1) or uniform
//! (`in=uniform(256,1024)`, inclusive). Prompts are drawn from whole-word tokens of the vocabulary
//! (a leading space followed by ASCII letters), decoded to text and re-encoded; where re-encoding
//! changes the count, the tokens are trimmed or topped up until the text encodes to exactly the
//! drawn length. `out` sets each request's generation length.

use crate::error::WorkloadError;
use crate::record::PromptRecord;
use crate::sample::SplitMix64;
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDist {
    Fixed(u32),
    Normal { mean: f64, sd: f64 },
    Uniform { low: u32, high: u32 },
}

impl LengthDist {
    fn parse(s: &str) -> Result<LengthDist, String> {
        let s = s.trim();
        let args = |name: &str| -> Option<Vec<f64>> {
            let inner = s.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
            inner
                .split(',')
                .map(|a| a.trim().parse::<f64>().ok())
                .collect()
        };
        if let Ok(n) = s.parse::<u32>() {
            return if n >= 1 {
                Ok(LengthDist::Fixed(n))
            } else {
                Err("a length must be at least 1".into())
            };
        }
        if let Some(a) = args("normal") {
            if a.len() == 2 && a[0] >= 1.0 && a[1] >= 0.0 {
                return Ok(LengthDist::Normal {
                    mean: a[0],
                    sd: a[1],
                });
            }
            return Err(format!(
                "{s}: write normal(MEAN,SD) with MEAN ≥ 1 and SD ≥ 0"
            ));
        }
        if let Some(a) = args("uniform") {
            if a.len() == 2 && a[0] >= 1.0 && a[1] >= a[0] && a.iter().all(|v| v.fract() == 0.0) {
                return Ok(LengthDist::Uniform {
                    low: a[0] as u32,
                    high: a[1] as u32,
                });
            }
            return Err(format!(
                "{s}: write uniform(LOW,HIGH) with integers 1 ≤ LOW ≤ HIGH"
            ));
        }
        Err(format!(
            "{s}: write a token count (512), normal(MEAN,SD) or uniform(LOW,HIGH)"
        ))
    }

    pub fn draw(&self, rng: &mut SplitMix64) -> u32 {
        match *self {
            LengthDist::Fixed(n) => n,
            LengthDist::Normal { mean, sd } => (mean + sd * rng.normal()).round().max(1.0) as u32,
            LengthDist::Uniform { low, high } => low + rng.below(u64::from(high - low) + 1) as u32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSpec {
    pub input: LengthDist,
    pub output: LengthDist,
}

/// Splits on commas outside parentheses.
fn top_level_parts(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

impl SyntheticSpec {
    pub fn parse(s: &str) -> Result<SyntheticSpec, WorkloadError> {
        let invalid = |reason: String| WorkloadError::InvalidSpec {
            spec: format!("synthetic:{s}"),
            reason,
        };
        let (mut input, mut output) = (None, None);
        for part in top_level_parts(s)
            .into_iter()
            .filter(|p| !p.trim().is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part:?} is not KEY=VALUE; write in=N,out=M")))?;
            let d = LengthDist::parse(v).map_err(invalid)?;
            match k.trim() {
                "in" => input = Some(d),
                "out" => output = Some(d),
                other => return Err(invalid(format!("unknown key {other:?}; use in= and out="))),
            }
        }
        match (input, output) {
            (Some(input), Some(output)) => Ok(SyntheticSpec { input, output }),
            _ => Err(invalid(
                "give both lengths, as in synthetic:in=128,out=256".into(),
            )),
        }
    }
}

/// Builds `n` prompts with `seed`.
pub fn build(
    spec: &SyntheticSpec,
    n: usize,
    seed: u64,
    tok: &Tokenizer,
) -> Result<Vec<PromptRecord>, WorkloadError> {
    let words: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&id| !tok.is_special(id))
        .filter(|&id| {
            tok.decode(&[id]).is_ok_and(|t| {
                t.len() >= 3
                    && t.starts_with(' ')
                    && t[1..].chars().all(|c| c.is_ascii_alphabetic())
            })
        })
        .collect();
    if words.is_empty() {
        return Err(WorkloadError::Tokenizer {
            source_desc: tok.source.clone(),
            message: "its vocabulary has no whole-word tokens to build synthetic prompts from"
                .into(),
        });
    }
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n);
    for index in 0..n {
        let len = spec.input.draw(&mut rng) as usize;
        let max_new = spec.output.draw(&mut rng);
        let mut ids: Vec<u32> = (0..len)
            .map(|_| words[rng.below(words.len() as u64) as usize])
            .collect();
        let mut text = tok.decode(&ids)?;
        for _ in 0..16 {
            let re = tok.encode(&text)?;
            if re.len() == len {
                ids = re;
                break;
            }
            ids = re;
            ids.truncate(len);
            while ids.len() < len {
                ids.push(words[rng.below(words.len() as u64) as usize]);
            }
            text = tok.decode(&ids)?;
        }
        let prompt_tokens = tok.encode(&text)?;
        if prompt_tokens.len() != len {
            return Err(WorkloadError::Tokenizer {
                source_desc: tok.source.clone(),
                message: format!(
                    "could not build a prompt of exactly {len} tokens (got {})",
                    prompt_tokens.len()
                ),
            });
        }
        out.push(PromptRecord {
            index,
            prompt: text,
            reference: None,
            max_new_tokens: Some(max_new),
            prompt_tokens: Some(prompt_tokens),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_normal_and_uniform() {
        let s = SyntheticSpec::parse("in=normal(512,128),out=uniform(64,256)").unwrap();
        assert_eq!(
            s.input,
            LengthDist::Normal {
                mean: 512.0,
                sd: 128.0
            }
        );
        assert_eq!(s.output, LengthDist::Uniform { low: 64, high: 256 });
        assert_eq!(
            SyntheticSpec::parse("in=128,out=256").unwrap().input,
            LengthDist::Fixed(128)
        );
        assert!(SyntheticSpec::parse("in=0,out=1").is_err());
        assert!(SyntheticSpec::parse("in=128")
            .unwrap_err()
            .to_string()
            .contains("both lengths"));
        assert!(SyntheticSpec::parse("in=uniform(9,3),out=1").is_err());
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = SplitMix64::new(1);
        let u = LengthDist::Uniform { low: 3, high: 5 };
        assert!((0..1000)
            .map(|_| u.draw(&mut r))
            .all(|v| (3..=5).contains(&v)));
        let n = LengthDist::Normal {
            mean: 2.0,
            sd: 10.0,
        };
        assert!((0..1000).map(|_| n.draw(&mut r)).all(|v| v >= 1));
    }
}
