//! A line reader with a cap on what it keeps of one line, so a child that writes a huge
//! line (or never a newline) cannot make the server buffer without bound.

use std::io::{self, BufRead, BufReader, Read};

pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max,
        }
    }

    /// Reads the next line into `buf` (cleared first, newline stripped). Returns `None` at
    /// end of input, otherwise how many bytes past the cap were dropped.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        buf.clear();
        let mut dropped = 0;
        let mut seen_any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(seen_any.then_some(dropped));
            }
            seen_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(available.len());
            let room = self.max.saturating_sub(buf.len());
            let keep = end.min(room);
            buf.extend_from_slice(&available[..keep]);
            dropped += end - keep;
            let consumed = newline.map_or(end, |at| at + 1);
            self.inner.consume(consumed);
            if newline.is_some() {
                return Ok(Some(dropped));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(input: &[u8], max: usize) -> Vec<(String, usize)> {
        let mut reader = LineReader::new(input, max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(dropped) = reader.next_line(&mut buf).unwrap() {
            out.push((String::from_utf8(buf.clone()).unwrap(), dropped));
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_unterminated_one() {
        let lines = all_lines(b"a\n\nbc\nlast", 100);
        let want = [("a", 0), ("", 0), ("bc", 0), ("last", 0)];
        assert_eq!(lines, want.map(|(s, n)| (s.to_string(), n)));
    }

    #[test]
    fn caps_a_long_line_and_resumes_after_it() {
        let mut input = vec![b'x'; 200_000];
        input.extend_from_slice(b"\nnext\n");
        let lines = all_lines(&input, 10);
        assert_eq!(lines[0], ("x".repeat(10), 199_990));
        assert_eq!(lines[1], ("next".to_string(), 0));
    }
}
