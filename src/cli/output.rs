//! Writing results: data to stdout (raw bytes, one-line JSON or a small table) with a
//! closed pipe counted as success, and the formatting helpers the human output shares.

use std::io::{ErrorKind, Write};

use serde_json::Value;

use super::CliError;

/// Writes `bytes` to stdout and flushes. A reader that went away (`| head`) is not an
/// error: there is no one left to tell.
pub fn stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(CliError::Write(e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to stdout and flushes; false once stdout is a closed pipe (a reader
/// like `head` went away), so a caller streaming a body can stop.
pub fn stdout_open(bytes: &[u8]) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Write(e)),
    }
}

/// Prints a JSON value on one line.
pub fn json(value: &Value) -> Result<(), CliError> {
    let mut line = serde_json::to_string(value).expect("JSON values serialize");
    line.push('\n');
    stdout(line.as_bytes())
}

/// Prints the server's reply as JSON with `--json`, else the human `text` (a line
/// break is added when missing).
pub fn reply(
    json_wanted: bool,
    value: &Value,
    text: impl FnOnce(&Value) -> String,
) -> Result<(), CliError> {
    if json_wanted {
        return json(value);
    }
    let mut text = text(value);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    stdout(text.as_bytes())
}

/// Aligns rows into columns separated by two spaces; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON field as display text: strings bare, null as `-`.
pub fn field(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON number shown with `show` (a time, duration or size), or `-` when absent.
pub fn shown<T: TryFrom<i64>>(value: &Value, show: fn(T) -> String) -> String {
    match value.as_i64().map(T::try_from) {
        Some(Ok(n)) => show(n),
        _ => "-".to_string(),
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time: `2024-05-01T12:00:00.250Z`.
pub fn time(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_date(days);
    let (h, m) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (s, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The (year, month, day) of a day count since 1970-01-01, counted forward (or back) a
/// year and then a month at a time; log times are recent, so the loops are short.
fn civil_date(mut days: i64) -> (i64, i64, i64) {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut year = 1970;
    while days < 0 {
        year -= 1;
        days += if leap(year) { 366 } else { 365 };
    }
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let february = if leap(year) { 29 } else { 28 };
    let lengths = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    (year, month, days + 1)
}

/// Milliseconds as a short duration: `850ms`, `12s`, `3m20s`, `2h5m`.
pub fn duration(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{}s", ms / 1000),
        ms if ms < 3_600_000 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        ms => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Milliseconds in the duration syntax of the config, without rounding: `1500ms`, `30s`.
pub fn exact_duration(ms: u64) -> String {
    let units = [(3_600_000, "h"), (60_000, "m"), (1000, "s")];
    match units
        .iter()
        .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
    {
        Some((unit, name)) => format!("{}{name}", ms / unit),
        None => format!("{ms}ms"),
    }
}

/// Bytes in the size syntax of the config: `256M`, `512K`, or plain bytes.
pub fn size(bytes: u64) -> String {
    let units = [(30, "G"), (20, "M"), (10, "K")];
    match units
        .iter()
        .find(|(shift, _)| bytes > 0 && bytes.is_multiple_of(1 << shift))
    {
        Some((shift, unit)) => format!("{}{unit}", bytes >> shift),
        None => bytes.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(951_782_400_250), "2000-02-29T00:00:00.250Z");
        assert_eq!(time(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn tables_align_and_durations_shorten() {
        let rows = vec![
            vec!["NAME".to_string(), "STATE".to_string()],
            vec!["hello-world".to_string(), "serving".to_string()],
        ];
        assert_eq!(table(&rows), "NAME         STATE\nhello-world  serving\n");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(200_000), "3m20s");
        assert_eq!(exact_duration(1500), "1500ms");
        assert_eq!(exact_duration(120_000), "2m");
        assert_eq!(size(256 << 20), "256M");
        assert_eq!(size(1536), "1536");
        assert_eq!(size(0), "0");
    }
}
