//! A reader for the metadata of GGUF files (the key–value header before the tensors), enough to
//! build the tokenizer a GGUF model carries. Tensor data is never read.

use crate::error::WorkloadError;
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The metadata of a GGUF file.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub version: u32,
    pub tensor_count: u64,
    pub kv: HashMap<String, Value>,
}

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// Longest string or array accepted, so a corrupt length cannot exhaust memory.
const MAX_LEN: u64 = 1 << 28;

struct Reader<R> {
    r: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64().map_err(|e| e.to_string())?;
        if n > MAX_LEN {
            return Err(format!("a string claims {n} bytes"));
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| format!("a string is not UTF-8: {e}"))
    }

    fn value(&mut self, ty: u32) -> Result<Value, String> {
        let io = |e: std::io::Error| e.to_string();
        Ok(match ty {
            0 => Value::UInt(u64::from(self.bytes::<1>().map_err(io)?[0])),
            1 => Value::Int(i64::from(self.bytes::<1>().map_err(io)?[0] as i8)),
            2 => Value::UInt(u64::from(u16::from_le_bytes(self.bytes().map_err(io)?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.bytes().map_err(io)?))),
            4 => Value::UInt(u64::from(self.u32().map_err(io)?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.bytes().map_err(io)?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.bytes().map_err(io)?))),
            7 => Value::Bool(self.bytes::<1>().map_err(io)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let inner = self.u32().map_err(io)?;
                let n = self.u64().map_err(io)?;
                if n > MAX_LEN {
                    return Err(format!("an array claims {n} elements"));
                }
                let mut items = Vec::with_capacity(n.min(1 << 20) as usize);
                for _ in 0..n {
                    items.push(self.value(inner)?);
                }
                Value::Array(items)
            }
            10 => Value::UInt(self.u64().map_err(io)?),
            11 => Value::Int(i64::from_le_bytes(self.bytes().map_err(io)?)),
            12 => Value::Float(f64::from_le_bytes(self.bytes().map_err(io)?)),
            other => return Err(format!("unknown metadata type {other}")),
        })
    }
}

/// Reads the metadata of the GGUF file at `path`.
pub fn read_metadata(path: &Path) -> Result<Metadata, WorkloadError> {
    let err = |message: String| WorkloadError::Gguf {
        path: path.to_path_buf(),
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| WorkloadError::io(path, e))?;
    let mut r = Reader {
        r: BufReader::with_capacity(1 << 20, f),
    };
    let magic = r
        .bytes::<4>()
        .map_err(|e| err(format!("too short for a GGUF header: {e}")))?;
    if &magic != b"GGUF" {
        return Err(err(
            "not a GGUF file (the magic bytes are not \"GGUF\")".into()
        ));
    }
    let version = r.u32().map_err(|e| err(e.to_string()))?;
    if !(2..=3).contains(&version) {
        return Err(err(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        )));
    }
    let tensor_count = r.u64().map_err(|e| err(e.to_string()))?;
    let kv_count = r.u64().map_err(|e| err(e.to_string()))?;
    let mut kv = HashMap::new();
    for i in 0..kv_count {
        let key = r
            .string()
            .map_err(|e| err(format!("metadata entry {i}: {e}")))?;
        let ty = r.u32().map_err(|e| err(format!("metadata {key}: {e}")))?;
        let value = r
            .value(ty)
            .map_err(|e| err(format!("metadata {key}: {e}")))?;
        kv.insert(key, value);
    }
    Ok(Metadata {
        version,
        tensor_count,
        kv,
    })
}
