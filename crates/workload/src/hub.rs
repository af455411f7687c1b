//! Dataset and model files from the Hugging Face hub, downloaded once into the hub's own cache
//! layout.
//!
//! Honoured: `HF_ENDPOINT` (default `https://huggingface.co`), `HF_HUB_CACHE`, else `HF_HOME/hub`,
//! else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` (use the cache only); `HF_TOKEN`.
//! Files land in `datasets--ORG--NAME/snapshots/SHA/PATH` (models: `models--ORG--NAME`) with
//! `refs/REVISION` holding the SHA, the layout `huggingface_hub` uses, so caches filled by either
//! tool serve both.
//!
//! Requests: `GET {endpoint}/api/datasets/{repo}/revision/{revision}` gives the commit SHA and the
//! file list; `GET {endpoint}/datasets/{repo}/resolve/{sha}/{path}` gives each file. Models use
//! `/api/models/...` and `/{repo}/resolve/...`.

use crate::error::WorkloadError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The two kinds of hub repository wattbench reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Dataset,
    Model,
}

impl RepoKind {
    fn cache_prefix(self) -> &'static str {
        match self {
            RepoKind::Dataset => "datasets",
            RepoKind::Model => "models",
        }
    }

    fn api(self) -> &'static str {
        match self {
            RepoKind::Dataset => "api/datasets",
            RepoKind::Model => "api/models",
        }
    }

    fn resolve(self, repo: &str) -> String {
        match self {
            RepoKind::Dataset => format!("datasets/{repo}"),
            RepoKind::Model => repo.to_string(),
        }
    }
}

/// Chooses, from a repository's file list, the files to fetch (or says why none fit).
pub type FileChooser = dyn Fn(&[String]) -> Result<Vec<String>, String>;

#[derive(Debug, Clone)]
pub struct Hub {
    pub endpoint: String,
    pub cache: PathBuf,
    pub offline: bool,
    pub token: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl Hub {
    pub fn from_env() -> Hub {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        Hub {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            cache: var("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join("hub")),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            token: var("HF_TOKEN"),
        }
    }

    fn repo_dir(&self, kind: RepoKind, repo: &str) -> PathBuf {
        self.cache.join(format!(
            "{}--{}",
            kind.cache_prefix(),
            repo.replace('/', "--")
        ))
    }

    /// Files of the cached snapshot of dataset `repo@revision`, if there is one.
    pub fn cached(&self, repo: &str, revision: &str) -> Option<(PathBuf, Vec<String>)> {
        self.cached_of(RepoKind::Dataset, repo, revision)
    }

    fn cached_of(
        &self,
        kind: RepoKind,
        repo: &str,
        revision: &str,
    ) -> Option<(PathBuf, Vec<String>)> {
        let dir = self.repo_dir(kind, repo);
        let sha = std::fs::read_to_string(dir.join("refs").join(revision)).ok()?;
        let snap = dir.join("snapshots").join(sha.trim());
        let mut files = Vec::new();
        collect(&snap, &snap, &mut files);
        files.sort();
        (!files.is_empty()).then_some((snap, files))
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut req = agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.call().map_err(|e| format!("GET {url}: {e}"))
    }

    /// Local paths of the files of dataset `repo@revision` that `want` selects (given the
    /// repository's file list), from the cache or downloaded into it.
    pub fn dataset_files(
        &self,
        repo: &str,
        revision: &str,
        want: &FileChooser,
    ) -> Result<Vec<PathBuf>, WorkloadError> {
        self.files(RepoKind::Dataset, repo, revision, want)
    }

    /// Like [`Hub::dataset_files`], for any kind of repository.
    pub fn files(
        &self,
        kind: RepoKind,
        repo: &str,
        revision: &str,
        want: &FileChooser,
    ) -> Result<Vec<PathBuf>, WorkloadError> {
        let what = match kind {
            RepoKind::Dataset => "dataset",
            RepoKind::Model => "model",
        };
        let hub_err = |message: String| WorkloadError::Hub {
            what: format!("{what} {repo}@{revision}"),
            message,
        };
        if let Some((snap, files)) = self.cached_of(kind, repo, revision) {
            if let Ok(chosen) = want(&files) {
                return Ok(chosen.iter().map(|f| snap.join(f)).collect());
            }
        }
        if self.offline {
            return Err(hub_err(format!(
                "HF_HUB_OFFLINE is set and the cache {} holds no copy",
                self.repo_dir(kind, repo).display()
            )));
        }
        let agent = self.agent();
        let url = format!(
            "{}/{}/{repo}/revision/{revision}",
            self.endpoint,
            kind.api()
        );
        let mut resp = self.get(&agent, &url).map_err(hub_err)?;
        let info: serde_json::Value = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|e| hub_err(format!("{url} did not answer JSON: {e}")))?;
        let sha = info["sha"]
            .as_str()
            .filter(|s| !s.is_empty() && !s.contains(['/', '.']))
            .ok_or_else(|| hub_err(format!("{url} gave no commit sha")))?
            .to_string();
        let files: Vec<String> = info["siblings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["rfilename"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let chosen = want(&files).map_err(hub_err)?;
        let snap = self.repo_dir(kind, repo).join("snapshots").join(&sha);
        let mut paths = Vec::new();
        for f in &chosen {
            if f.split('/').any(|p| p == ".." || p.is_empty()) {
                return Err(hub_err(format!("refusing the file name {f:?}")));
            }
            let dest = snap.join(f);
            if !dest.exists() {
                let url = format!("{}/{}/resolve/{sha}/{f}", self.endpoint, kind.resolve(repo));
                let resp = self.get(&agent, &url).map_err(hub_err)?;
                download(resp, &dest)
                    .map_err(|e| hub_err(format!("saving {}: {e}", dest.display())))?;
            }
            paths.push(dest);
        }
        let refs = self.repo_dir(kind, repo).join("refs");
        std::fs::create_dir_all(&refs)
            .and_then(|_| std::fs::write(refs.join(revision), &sha))
            .map_err(|e| WorkloadError::io(refs.join(revision), e))?;
        Ok(paths)
    }
}

/// Streams a response to `dest` through a temporary file, so a broken download leaves no file.
fn download(resp: ureq::http::Response<ureq::Body>, dest: &Path) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dest.with_extension("incomplete");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut body = resp.into_body().into_reader();
    std::io::copy(&mut body, &mut out)?;
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, dest)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            if p.extension().is_none_or(|x| x != "incomplete") {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

/// Chooses the data files of one split: Parquet, JSON Lines or JSON files whose name starts with
/// the split (`test-00000-of-00001.parquet`, `train.jsonl`) or that sit in a folder named after it.
/// Where the repository has several configurations (top-level folders such as `main` and
/// `socratic`), `config` picks one; without it, `main` or `default` is taken, or the only one.
pub fn split_files(
    files: &[String],
    split: &str,
    config: Option<&str>,
) -> Result<Vec<String>, String> {
    let data_ext = |f: &str| {
        [".parquet", ".jsonl", ".json"]
            .iter()
            .any(|e| f.ends_with(e))
    };
    let matches_split = |f: &str| {
        let parts: Vec<&str> = f.split('/').collect();
        let name = parts.last().copied().unwrap_or("");
        name.starts_with(&format!("{split}-"))
            || name.starts_with(&format!("{split}."))
            || name.starts_with(&format!("{split}_"))
            || parts[..parts.len() - 1].contains(&split)
    };
    let candidates: Vec<&String> = files
        .iter()
        .filter(|f| data_ext(f) && matches_split(f))
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "no data file of the split {split:?} among {} file(s); pass --split with one the repository has",
            files.len()
        ));
    }
    let top = |f: &str| f.split_once('/').map(|(d, _)| d.to_string());
    let mut configs: Vec<String> = candidates.iter().filter_map(|f| top(f)).collect();
    configs.sort();
    configs.dedup();
    let chosen_config = match config {
        Some(c) => Some(c.to_string()),
        None if configs.len() <= 1 => None,
        None => ["main", "default"]
            .iter()
            .find(|c| configs.iter().any(|x| x == *c))
            .map(|c| c.to_string()),
    };
    if config.is_none() && configs.len() > 1 && chosen_config.is_none() {
        return Err(format!(
            "the repository has several configurations ({}); pass --hf-config NAME",
            configs.join(", ")
        ));
    }
    let chosen: Vec<String> = candidates
        .into_iter()
        .filter(|f| {
            chosen_config
                .as_ref()
                .is_none_or(|c| top(f).as_deref() == Some(c))
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "no files of configuration {:?}; the repository has {}",
            chosen_config.unwrap_or_default(),
            configs.join(", ")
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn picks_the_split_and_the_main_configuration() {
        let gsm = s(&[
            "README.md",
            "main/test-00000-of-00001.parquet",
            "main/train-00000-of-00001.parquet",
            "socratic/test-00000-of-00001.parquet",
        ]);
        assert_eq!(
            split_files(&gsm, "test", None).unwrap(),
            ["main/test-00000-of-00001.parquet"]
        );
        assert_eq!(
            split_files(&gsm, "test", Some("socratic")).unwrap(),
            ["socratic/test-00000-of-00001.parquet"]
        );
        let alpaca = s(&[
            "data/train-00000-of-00001-a09b74b3ef9c3b56.parquet",
            ".gitattributes",
        ]);
        assert_eq!(split_files(&alpaca, "train", None).unwrap().len(), 1);
        assert!(split_files(&alpaca, "test", None)
            .unwrap_err()
            .contains("--split"));
        let two = s(&["a/train.jsonl", "b/train.jsonl"]);
        assert!(split_files(&two, "train", None)
            .unwrap_err()
            .contains("--hf-config"));
    }
}
