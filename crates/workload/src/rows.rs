//! Reading files into rows (JSON objects), whatever their format: a JSON array, JSON Lines, CSV
//! with a header, or Parquet. Each row carries a label for error messages.

use crate::error::WorkloadError;
use serde_json::{Map, Value};
use std::path::Path;

pub type Object = Map<String, Value>;

/// A row and where it came from (`record 12` of an array, `line 7` of a JSONL or CSV file).
pub struct Row {
    pub label: String,
    pub fields: Object,
}

/// File formats that hold rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    JsonArray,
    JsonLines,
    Csv,
    Parquet,
}

impl FileFormat {
    /// By extension: `.json` (array, or JSON Lines when the first character is not `[`),
    /// `.jsonl`, `.csv`, `.parquet`.
    pub fn of(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()? {
            "json" => Some(FileFormat::JsonArray),
            "jsonl" | "ndjson" => Some(FileFormat::JsonLines),
            "csv" => Some(FileFormat::Csv),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }
}

pub fn read(path: &Path, format: FileFormat) -> Result<Vec<Row>, WorkloadError> {
    match format {
        FileFormat::Parquet => read_parquet(path),
        FileFormat::Csv => read_csv(path),
        FileFormat::JsonArray | FileFormat::JsonLines => {
            let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::io(path, e))?;
            if format == FileFormat::JsonArray && text.trim_start().starts_with('[') {
                read_json_array(path, &text)
            } else {
                read_json_lines(path, &text)
            }
        }
    }
}

fn read_json_array(path: &Path, text: &str) -> Result<Vec<Row>, WorkloadError> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| WorkloadError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(fields) => Ok(Row {
                label: format!("{}", i + 1),
                fields,
            }),
            other => Err(WorkloadError::Format {
                path: path.to_path_buf(),
                message: format!("record {} is {}, not a JSON object", i + 1, kind(&other)),
            }),
        })
        .collect()
}

/// JSON Lines held in memory (the bundled GSM8K split).
pub fn read_json_lines_str(path: &Path, text: &str) -> Result<Vec<Row>, WorkloadError> {
    read_json_lines(path, text)
}

fn read_json_lines(path: &Path, text: &str) -> Result<Vec<Row>, WorkloadError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| WorkloadError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not valid JSON: {e}"),
        })?;
        match v {
            Value::Object(fields) => rows.push(Row {
                label: format!("line {}", i + 1),
                fields,
            }),
            other => {
                return Err(WorkloadError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("{} is not a JSON object", kind(&other)),
                })
            }
        }
    }
    Ok(rows)
}

fn read_csv(path: &Path) -> Result<Vec<Row>, WorkloadError> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
    let headers = rdr.headers().map_err(|e| csv_error(path, e))?.clone();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(path, e))?;
        let line = rec.position().map_or(0, |p| p.line());
        let fields = headers
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
            .collect();
        rows.push(Row {
            label: format!("line {line}"),
            fields,
        });
    }
    Ok(rows)
}

fn csv_error(path: &Path, e: csv::Error) -> WorkloadError {
    match e.position() {
        Some(p) => WorkloadError::Line {
            path: path.to_path_buf(),
            line: p.line() as usize,
            message: e.to_string(),
        },
        None => WorkloadError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

fn read_parquet(path: &Path) -> Result<Vec<Row>, WorkloadError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let perr = |e: parquet::errors::ParquetError| WorkloadError::Format {
        path: path.to_path_buf(),
        message: format!("not a readable Parquet file: {e}"),
    };
    let file = std::fs::File::open(path).map_err(|e| WorkloadError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let mut rows = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(perr)?.enumerate() {
        let row = row.map_err(perr)?;
        let mut fields = Object::new();
        for (name, field) in row.get_column_iter() {
            let v = match field {
                Field::Str(s) => Value::String(s.clone()),
                Field::Null => Value::Null,
                // Nested columns (ShareGPT conversations) go through their JSON form.
                other => other.to_json_value(),
            };
            fields.insert(name.clone(), v);
        }
        rows.push(Row {
            label: format!("{}", i + 1),
            fields,
        });
    }
    Ok(rows)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field of a row; `None` when absent or null. Numbers are written out as text.
pub fn text(row: &Row, field: &str) -> Option<String> {
    match row.fields.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}
