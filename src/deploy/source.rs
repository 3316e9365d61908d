//! A function's source in a functions directory: its entry file and its `NAME.env`
//! environment file.
//!
//! In a functions directory, `NAME.ts` / `NAME.js` or `NAME/index.ts` / `NAME/index.js`
//! is function NAME, and `NAME.env` beside it holds `KEY=VALUE` lines.

use std::path::{Path, PathBuf};

use crate::registry::valid_name;
use crate::store::metadata::Env;

#[derive(Debug, Clone)]
pub struct FunctionSource {
    pub name: String,
    pub entry: PathBuf,
    pub env_file: Option<PathBuf>,
}

const ENTRY_EXTENSIONS: &[&str] = &["ts", "js"];

/// Lists the functions of `dir`, sorted by name. Entries with invalid names are skipped
/// with a warning.
pub fn scan_dir(dir: &Path) -> Result<Vec<FunctionSource>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();

    let mut found: Vec<FunctionSource> = Vec::new();
    for path in paths {
        let Some((name, entry)) = entry_of(&path) else {
            continue;
        };
        if !valid_name(&name) {
            log::warn!(
                "skipping {}: {name:?} is not a valid function name ([a-z0-9][a-z0-9_-]{{0,63}})",
                path.display()
            );
            continue;
        }
        if found.iter().any(|f| f.name == name) {
            log::warn!(
                "skipping {}: function {name} is already defined in {}",
                path.display(),
                dir.display()
            );
            continue;
        }
        let env_file = Some(dir.join(format!("{name}.env"))).filter(|p| p.is_file());
        found.push(FunctionSource {
            name,
            entry,
            env_file,
        });
    }
    Ok(found)
}

/// `(name, entry file)` when `path` is a function.
fn entry_of(path: &Path) -> Option<(String, PathBuf)> {
    let file_name = path.file_name()?.to_str()?;
    if path.is_dir() {
        let entry = ENTRY_EXTENSIONS
            .iter()
            .map(|ext| path.join(format!("index.{ext}")))
            .find(|p| p.is_file())?;
        return Some((file_name.to_string(), entry));
    }
    let (stem, ext) = file_name.rsplit_once('.')?;
    (ENTRY_EXTENSIONS.contains(&ext) && path.is_file())
        .then(|| (stem.to_string(), path.to_path_buf()))
}

impl FunctionSource {
    /// The function's environment from its `.env` file (empty without one).
    pub fn env(&self) -> Result<Env, String> {
        match &self.env_file {
            None => Ok(Env::new()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse_env(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// Parses `KEY=VALUE` lines: `#` comments, blank lines, an optional `export `, and values
/// optionally wrapped in matching single or double quotes.
pub fn parse_env(text: &str) -> Result<Env, String> {
    let mut env = Env::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", index + 1));
        };
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(format!(
                "line {}: {key:?} is not a valid variable name",
                index + 1
            ));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        env.insert(key.to_string(), unquoted.to_string());
    }
    Ok(env)
}

/// FNV-1a, 64 bits, for bundle digests: stable across builds and platforms, which std's hasher is not.
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The digest as stored in metadata.db.
    pub fn finish(&self) -> String {
        format!("fnv64:{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse() {
        let env =
            parse_env("# c\nA=1\nexport B = two words \nC=\"quoted = x\"\nD='s'\nE=\n").unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "quoted = x"),
                ("D", "s"),
                ("E", "")
            ]
        );
        assert!(parse_env("JUSTKEY\n").unwrap_err().contains("line 1"));
        assert!(parse_env("1A=x\n").is_err());
    }

    #[test]
    fn scan_finds_files_dirs_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("hello.ts"),
            "export default () => new Response('hi')",
        )
        .unwrap();
        std::fs::write(d.join("hello.env"), "A=1").unwrap();
        std::fs::create_dir(d.join("multi")).unwrap();
        std::fs::write(d.join("multi/index.ts"), "import './lib'").unwrap();
        std::fs::write(d.join("multi/lib.ts"), "export {}").unwrap();
        std::fs::write(d.join("Bad Name.ts"), "").unwrap();
        std::fs::write(d.join("notes.md"), "").unwrap();

        let found = scan_dir(d).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["hello", "multi"]);
        assert_eq!(
            found[0].env().unwrap().get("A").map(String::as_str),
            Some("1")
        );
        assert!(found[1].env().unwrap().is_empty());

        assert_eq!(found[1].entry, d.join("multi/index.ts"));
    }
}
