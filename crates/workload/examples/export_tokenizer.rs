//! Writes a tokenizer (a GGUF file's, or any `--tokenizer` form) as `tokenizer.json` and
//! `tokenizer_config.json` into a folder: a few megabytes to carry instead of a whole model.
//!
//! cargo run --release -p wattbench-workload --example export_tokenizer -- MODEL.gguf OUT_DIR

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        return Err("usage: export_tokenizer TOKENIZER OUT_DIR".into());
    };
    let t = wattbench_workload::Tokenizer::load(from)?;
    t.save(std::path::Path::new(to))?;
    println!("{} -> {to} (vocabulary {})", t.source, t.vocab_size());
    Ok(())
}
