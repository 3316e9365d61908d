//! `bun build` at deploy time: bundles a function's entry file and its relative imports
//! into one `bundle.js`, so a syntax or import error fails the deploy, not a request.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::worker::process;

/// A build that takes longer than this is killed.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum BuildError {
    Spawn(PathBuf, std::io::Error),
    Compile(String),
    TimedOut,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Spawn(bun, e) => write!(f, "failed to run {} build: {e}", bun.display()),
            BuildError::Compile(message) => write!(f, "{message}"),
            BuildError::TimedOut => write!(f, "bun build took longer than {BUILD_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Bundles `entry` into `out_file` with `bun build --target bun`.
pub fn build(bun: &Path, entry: &Path, out_file: &Path) -> Result<(), BuildError> {
    let mut command = Command::new(bun);
    command
        .arg("build")
        .arg(entry)
        .arg("--target=bun")
        .arg("--format=esm")
        .arg("--outfile")
        .arg(out_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = entry.parent() {
        command.current_dir(dir);
    }
    let mut child = process::spawn(command).map_err(|e| BuildError::Spawn(bun.to_path_buf(), e))?;

    // Collect both pipes on a helper thread so a chatty build cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (done_tx, done_rx) = bounded(1);
    std::thread::Builder::new()
        .name("bun-build-output".into())
        .spawn(move || {
            let mut out = String::new();
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            let _ = stdout.read_to_string(&mut out);
            let _ = done_tx.send(format!("{err}{out}"));
        })
        .map_err(|e| BuildError::Spawn(bun.to_path_buf(), e))?;

    let output = match done_rx.recv_timeout(BUILD_TIMEOUT) {
        Ok(output) => output,
        Err(_) => {
            process::kill_group(child.id());
            let _ = child.wait();
            return Err(BuildError::TimedOut);
        }
    };
    let status = child
        .wait()
        .map_err(|e| BuildError::Spawn(bun.to_path_buf(), e))?;
    if status.success() && out_file.is_file() {
        return Ok(());
    }
    let message = strip_ansi(output.trim());
    Err(BuildError::Compile(if message.is_empty() {
        format!("bun build failed: {status}")
    } else {
        message
    }))
}

/// Removes terminal colour codes from compiler output.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[31merror\u{1b}[0m: x"), "error: x");
    }
}
