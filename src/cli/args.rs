//! Raw arguments of the client commands. [`Raw::parse`] only sorts the words into flags
//! with values, switches and positional arguments against the command's [`Spec`]; each
//! command then validates what it needs into its own struct (with `checks.rs` for the
//! values several commands share). Every mistake is a [`CliError::Usage`] that points
//! at the command's `--help`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::CliError;

/// Flags every client command takes.
const COMMON_VALUES: &[&str] = &["--socket", "--config"];

/// One client command: its name, help text, flags and the function that runs it.
pub struct Spec {
    pub name: &'static str,
    pub help: &'static str,
    /// Flags that take a value: `--flag VALUE` or `--flag=VALUE`.
    pub values: &'static [&'static str],
    /// Flags without a value.
    pub switches: &'static [&'static str],
    pub run: fn(Raw) -> Result<(), CliError>,
}

/// The sorted arguments of one command line.
pub struct Raw {
    command: &'static str,
    values: Vec<(&'static str, OsString)>,
    switches: Vec<&'static str>,
    pub positional: Vec<OsString>,
}

impl Raw {
    pub fn parse(spec: &Spec, args: Vec<OsString>) -> Result<Raw, CliError> {
        let mut raw = Raw {
            command: spec.name,
            values: Vec::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str().filter(|t| t.starts_with('-') && t.len() > 1) else {
                raw.positional.push(arg);
                continue;
            };
            if text == "--" {
                raw.positional.extend(args.by_ref());
                break;
            }
            let (name, inline) = match text.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                _ => (text, None),
            };
            let value_flag = spec
                .values
                .iter()
                .chain(COMMON_VALUES)
                .find(|f| **f == name);
            let switch = spec
                .switches
                .iter()
                .chain(&["--help", "-h"])
                .find(|f| **f == name);
            match (value_flag, switch, inline) {
                (Some(flag), _, Some(value)) => raw.values.push((flag, value.into())),
                (Some(flag), _, None) => match args.next() {
                    Some(value) => raw.values.push((flag, value)),
                    None => return Err(raw.usage(format!("{flag} needs a value"))),
                },
                (None, Some(flag), None) => raw.switches.push(flag),
                (None, Some(flag), Some(_)) => {
                    return Err(raw.usage(format!("{flag} takes no value")))
                }
                (None, None, _) => return Err(raw.usage(format!("unknown flag {name}"))),
            }
        }
        Ok(raw)
    }

    /// A usage error that points at this command's help.
    pub fn usage(&self, message: impl std::fmt::Display) -> CliError {
        CliError::Usage(format!(
            "{message}; try `functions {} --help`",
            self.command
        ))
    }

    pub fn has(&self, switch: &str) -> bool {
        self.switches.contains(&switch)
    }

    /// Every value of a repeatable flag, in order.
    pub fn os_values(&self, flag: &str) -> Vec<&OsStr> {
        self.values
            .iter()
            .filter(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_os_str())
            .collect()
    }

    /// The value of a flag; given twice, the last one wins.
    pub fn os_value(&self, flag: &str) -> Option<&OsStr> {
        self.os_values(flag).pop()
    }

    pub fn value(&self, flag: &str) -> Result<Option<&str>, CliError> {
        self.os_value(flag).map(|v| self.text(flag, v)).transpose()
    }

    pub fn values(&self, flag: &str) -> Result<Vec<&str>, CliError> {
        self.os_values(flag)
            .into_iter()
            .map(|v| self.text(flag, v))
            .collect()
    }

    /// A flag's value checked by `parse`, whose error says what was expected.
    pub fn parsed<T>(
        &self,
        flag: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CliError> {
        match self.value(flag)? {
            Some(text) => parse(text)
                .map(Some)
                .map_err(|why| self.usage(format!("bad value {text:?} for {flag}: {why}"))),
            None => Ok(None),
        }
    }

    /// The positional arguments as text, checked to be between `min` and `max` of them.
    pub fn words(&self, min: usize, max: usize, what: &str) -> Result<Vec<&str>, CliError> {
        let n = self.positional.len();
        if n < min || n > max {
            return Err(self.usage(format!("expected {what}")));
        }
        self.positional
            .iter()
            .map(|v| self.text("argument", v))
            .collect()
    }

    fn text<'a>(&self, what: &str, value: &'a OsStr) -> Result<&'a str, CliError> {
        value
            .to_str()
            .ok_or_else(|| self.usage(format!("{what} {value:?} is not valid UTF-8")))
    }

    /// Where to find the server: `--socket` and `--config`, resolved later.
    pub fn target(&self) -> Target {
        Target {
            socket: self.os_value("--socket").map(PathBuf::from),
            config: self.os_value("--config").map(PathBuf::from),
        }
    }
}

/// The flags that say which server to talk to; see `connect::socket_path`.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub socket: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        name: "test",
        help: "",
        values: &["--data", "--env"],
        switches: &["--json", "-i"],
        run: |_| Ok(()),
    };

    fn parse(args: &[&str]) -> Result<Raw, CliError> {
        Raw::parse(&SPEC, args.iter().map(OsString::from).collect())
    }

    #[test]
    fn flags_values_and_positionals_are_sorted_apart() {
        let raw = parse(&[
            "a",
            "--data",
            "-",
            "--env=K=V",
            "-i",
            "--env",
            "X=1",
            "-",
            "b",
        ]);
        let raw = raw.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(raw.value("--data").unwrap(), Some("-"));
        assert_eq!(raw.values("--env").unwrap(), ["K=V", "X=1"]);
        assert!(raw.has("-i") && !raw.has("--json"));
        assert_eq!(raw.words(0, 9, "").unwrap(), ["a", "-", "b"]);

        let raw = parse(&["--", "--json"]).unwrap();
        assert!(!raw.has("--json"));
        assert_eq!(raw.words(1, 1, "").unwrap(), ["--json"]);
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_flag() {
        for (args, needle) in [
            (&["--bogus"][..], "unknown flag --bogus"),
            (&["-x"][..], "unknown flag -x"),
            (&["--data"][..], "--data needs a value"),
            (&["--json=1"][..], "--json takes no value"),
        ] {
            let err = parse(args).err().expect("an error");
            assert_eq!(err.code(), 2);
            assert!(err.to_string().contains(needle), "{err}");
            assert!(err.to_string().contains("functions test --help"), "{err}");
        }
    }
}
