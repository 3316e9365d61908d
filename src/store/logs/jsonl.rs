//! The daily JSONL files: `logs/YYYY-MM-DD.jsonl` (the UTC date of each entry), one JSON
//! object a line. A day whose file grows past the segment size goes on in
//! `YYYY-MM-DD.1.jsonl`, `.2`, ..., so the size limit can remove a busy day piece by piece.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const DAY_MS: i64 = 86_400_000;

/// One JSONL file of the logs directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub name: String,
    /// `YYYY-MM-DD`, which sorts like the dates it names.
    pub date: String,
    pub segment: u32,
    pub size: u64,
}

/// The appender: keeps the file of the current day and segment open.
pub struct Jsonl {
    dir: PathBuf,
    segment_max: u64,
    current: Option<Current>,
}

struct Current {
    day: i64,
    segment: u32,
    out: BufWriter<File>,
    size: u64,
}

impl Jsonl {
    pub fn new(dir: &Path, segment_max: u64) -> Jsonl {
        Jsonl {
            dir: dir.to_path_buf(),
            segment_max,
            current: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one JSON object (without its line break) to the file of `time_ms`'s day.
    pub fn append(&mut self, time_ms: i64, object: &[u8]) -> io::Result<()> {
        let day = time_ms.div_euclid(DAY_MS);
        let current = match self.current.take() {
            Some(c) if c.day == day && c.size < self.segment_max => c,
            Some(mut c) if c.day == day => {
                c.out.flush()?;
                self.open(day, Some(c.segment + 1))?
            }
            Some(mut c) => {
                c.out.flush()?;
                self.open(day, None)?
            }
            None => self.open(day, None)?,
        };
        let current = self.current.insert(current);
        current.out.write_all(object)?;
        current.out.write_all(b"\n")?;
        current.size += object.len() as u64 + 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(current) => current.out.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and closes the open file, so retention may delete it.
    pub fn close(&mut self) -> io::Result<()> {
        let result = self.flush();
        self.current = None;
        result
    }

    /// Opens `segment` of `day`, or the last segment the day has (0 when none).
    fn open(&self, day: i64, segment: Option<u32>) -> io::Result<Current> {
        let date = date_of_day(day);
        let segment = match segment {
            Some(segment) => segment,
            None => list(&self.dir)?
                .into_iter()
                .filter(|f| f.date == date)
                .map(|f| f.segment)
                .max()
                .unwrap_or(0),
        };
        let path = self.dir.join(file_name(&date, segment));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut size = file.metadata()?.len();
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        // A server killed mid-write may have left half a line: end it, so the next
        // object starts a line of its own.
        if size > 0 && last_byte(out.get_ref(), size)? != b'\n' {
            out.write_all(b"\n")?;
            size += 1;
        }
        Ok(Current {
            day,
            segment,
            out,
            size,
        })
    }
}

fn last_byte(file: &File, size: u64) -> io::Result<u8> {
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, size - 1)?;
    Ok(byte[0])
}

/// Every JSONL file of `dir`, oldest first; other files are left out.
pub fn list(dir: &Path) -> io::Result<Vec<FileInfo>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((date, segment)) = parse_name(&name) else {
            continue;
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(FileInfo {
            date: date.to_string(),
            segment,
            size,
            name,
        });
    }
    files.sort_by(|a, b| (&a.date, a.segment).cmp(&(&b.date, b.segment)));
    Ok(files)
}

/// `2024-05-01.jsonl` for segment 0, `2024-05-01.3.jsonl` after.
pub fn file_name(date: &str, segment: u32) -> String {
    match segment {
        0 => format!("{date}.jsonl"),
        n => format!("{date}.{n}.jsonl"),
    }
}

/// The date and segment of a JSONL file name, or None for any other name.
pub fn parse_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (date, segment) = match stem.split_once('.') {
        Some((date, n)) if !n.starts_with('0') => (date, n.parse().ok()?),
        Some(_) => return None,
        None => (stem, 0),
    };
    let digits = |range: std::ops::Range<usize>| date[range].bytes().all(|b| b.is_ascii_digit());
    let shaped = date.len() == 10
        && &date[4..5] == "-"
        && &date[7..8] == "-"
        && digits(0..4)
        && digits(5..7)
        && digits(8..10);
    shaped.then_some((date, segment))
}

/// The UTC date `YYYY-MM-DD` of a day count since 1970-01-01, stepping a year and then a
/// month at a time (dates of log entries are recent, so the loops are short).
pub fn date_of_day(mut days: i64) -> String {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let year_len = |y: i64| if leap(y) { 366 } else { 365 };
    let mut year = 1970;
    while days < 0 {
        year -= 1;
        days += year_len(year);
    }
    while days >= year_len(year) {
        days -= year_len(year);
        year += 1;
    }
    let february = if leap(year) { 29 } else { 28 };
    let mut month = 1;
    for length in [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    format!("{year:04}-{month:02}-{:02}", days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_utc_date_and_segment() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(951_782_400_000 / DAY_MS), "2000-02-29");
        assert_eq!(date_of_day(1_735_689_599_999 / DAY_MS), "2024-12-31");
        assert_eq!(date_of_day(1_735_689_600_000 / DAY_MS), "2025-01-01");
        assert_eq!(date_of_day(-1), "1969-12-31");
        assert_eq!(file_name("2024-05-01", 0), "2024-05-01.jsonl");
        assert_eq!(file_name("2024-05-01", 2), "2024-05-01.2.jsonl");
        assert_eq!(parse_name("2024-05-01.jsonl"), Some(("2024-05-01", 0)));
        assert_eq!(parse_name("2024-05-01.12.jsonl"), Some(("2024-05-01", 12)));
        for other in [
            "notes.txt",
            "2024-05-01.jsonl.tmp",
            "2024-5-01.jsonl",
            "2024-05-01.01.jsonl",
            "x.jsonl",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_day_rolls_over_to_segments_and_lists_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut jsonl = Jsonl::new(dir.path(), 8);
        let day = 19_844 * DAY_MS;
        jsonl.append(day, b"{\"a\":1}").unwrap();
        jsonl.append(day + 1, b"{\"a\":2}").unwrap();
        jsonl.append(day + 2, b"{\"a\":3}").unwrap();
        jsonl.append(day + DAY_MS, b"{}").unwrap();
        jsonl.close().unwrap();
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "2024-05-01.jsonl",
                "2024-05-01.1.jsonl",
                "2024-05-01.2.jsonl",
                "2024-05-02.jsonl"
            ]
        );

        // Reopened later, the day goes on in its last segment.
        let mut jsonl = Jsonl::new(dir.path(), 1000);
        jsonl.append(day + 3, b"{\"a\":4}").unwrap();
        jsonl.close().unwrap();
        let last = std::fs::read_to_string(dir.path().join("2024-05-01.2.jsonl")).unwrap();
        assert_eq!(last, "{\"a\":3}\n{\"a\":4}\n");

        // Half a line left by a killed server is ended before the next object.
        let first = dir.path().join("2024-05-02.jsonl");
        std::fs::write(&first, "{}\n{\"cut").unwrap();
        let mut jsonl = Jsonl::new(dir.path(), 1000);
        jsonl.append(day + DAY_MS, b"{}").unwrap();
        jsonl.close().unwrap();
        assert_eq!(std::fs::read_to_string(first).unwrap(), "{}\n{\"cut\n{}\n");
    }
}
