//! The socket API's frame codec, shared by the server and the client.
//!
//! A frame is `u32 length (big-endian) | u8 code | u32 json length | json | raw bytes`,
//! where `length` counts every byte after itself. In a request the code is a command, in
//! a response a status. The JSON part is one object (empty means `{}`); the raw part
//! carries a function's source or an invocation's body byte for byte. The length is
//! checked against the maximum before anything is allocated. docs/protocol.md specifies
//! the bytes.

use std::fmt;
use std::io::{self, Read, Write};

use serde_json::Value;

/// Bytes of a frame after the length prefix that are not payload: code and json length.
const HEADER: usize = 5;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub code: u8,
    pub json: Value,
    pub raw: Vec<u8>,
}

#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    Closed,
    Io(io::Error),
    TooLarge {
        length: u64,
        max: usize,
    },
    TooShort(u32),
    BadJsonLength {
        json: u32,
        frame: u32,
    },
    BadJson(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "frame of {length} bytes exceeds the maximum of {max} bytes"
                )
            }
            FrameError::TooShort(n) => write!(f, "frame of {n} bytes is shorter than its header"),
            FrameError::BadJsonLength { json, frame } => {
                write!(
                    f,
                    "json length {json} does not fit in a frame of {frame} bytes"
                )
            }
            FrameError::BadJson(e) => write!(f, "json part is not a JSON object: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    pub fn new(code: u8, json: Value) -> Frame {
        Frame {
            code,
            json,
            raw: Vec::new(),
        }
    }

    pub fn with_raw(mut self, raw: Vec<u8>) -> Frame {
        self.raw = raw;
        self
    }

    /// Encodes the frame; fails if it would exceed `u32::MAX` bytes.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let json = serde_json::to_vec(&self.json).map_err(io::Error::other)?;
        let length = HEADER + json.len() + self.raw.len();
        let length = u32::try_from(length)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame exceeds 4 GiB"))?;
        let mut out = Vec::with_capacity(4 + length as usize);
        out.extend_from_slice(&length.to_be_bytes());
        out.push(self.code);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.raw);
        Ok(out)
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.encode()?)?;
        out.flush()
    }

    /// Reads one frame of at most `max` bytes (after the length prefix).
    pub fn read_from(input: &mut impl Read, max: usize) -> Result<Frame, FrameError> {
        let mut prefix = [0u8; 4];
        read_prefix(input, &mut prefix)?;
        let length = u32::from_be_bytes(prefix);
        if length as u64 > max as u64 {
            return Err(FrameError::TooLarge {
                length: length as u64,
                max,
            });
        }
        if (length as usize) < HEADER {
            return Err(FrameError::TooShort(length));
        }
        let mut header = [0u8; HEADER];
        input.read_exact(&mut header).map_err(FrameError::Io)?;
        let code = header[0];
        let json_length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let payload = length as usize - HEADER;
        if json_length as usize > payload {
            return Err(FrameError::BadJsonLength {
                json: json_length,
                frame: length,
            });
        }
        let mut json = vec![0u8; json_length as usize];
        input.read_exact(&mut json).map_err(FrameError::Io)?;
        let mut raw = vec![0u8; payload - json_length as usize];
        input.read_exact(&mut raw).map_err(FrameError::Io)?;

        let json = match json.is_empty() {
            true => Value::Object(Default::default()),
            false => {
                serde_json::from_slice(&json).map_err(|e| FrameError::BadJson(e.to_string()))?
            }
        };
        if !json.is_object() {
            return Err(FrameError::BadJson("not an object".into()));
        }
        Ok(Frame { code, json, raw })
    }
}

/// Reads the 4-byte prefix; a clean end of input before its first byte is `Closed`.
fn read_prefix(input: &mut impl Read, prefix: &mut [u8; 4]) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < 4 {
        match input.read(&mut prefix[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_with_json_and_raw_bytes() {
        let frame = Frame::new(3, json!({"name": "hello"})).with_raw((0..=255).collect());
        let bytes = frame.encode().unwrap();
        assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_be_bytes());
        let decoded = Frame::read_from(&mut bytes.as_slice(), 1 << 20).unwrap();
        assert_eq!(decoded, frame);
    }

    #[test]
    fn empty_json_reads_as_an_empty_object() {
        let bytes = [0, 0, 0, 5, 7, 0, 0, 0, 0];
        let frame = Frame::read_from(&mut bytes.as_slice(), 100).unwrap();
        assert_eq!((frame.code, frame.json), (7, json!({})));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1];
        let err = Frame::read_from(&mut bytes.as_slice(), 1 << 20).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn malformed_frames_are_errors() {
        let short = [0, 0, 0, 2, 1, 1];
        assert!(matches!(
            Frame::read_from(&mut short.as_slice(), 100),
            Err(FrameError::TooShort(2))
        ));
        let json_too_long = [0, 0, 0, 5, 1, 0, 0, 0, 9];
        let err = Frame::read_from(&mut json_too_long.as_slice(), 100).unwrap_err();
        assert!(matches!(err, FrameError::BadJsonLength { .. }));
        let not_json = [0, 0, 0, 8, 1, 0, 0, 0, 3, b'a', b'b', b'c'];
        assert!(matches!(
            Frame::read_from(&mut not_json.as_slice(), 100),
            Err(FrameError::BadJson(_))
        ));
        let truncated = [0, 0, 0, 20, 1, 0, 0];
        assert!(matches!(
            Frame::read_from(&mut truncated.as_slice(), 100),
            Err(FrameError::Io(_))
        ));
        let nothing: [u8; 0] = [];
        assert!(matches!(
            Frame::read_from(&mut nothing.as_slice(), 100),
            Err(FrameError::Closed)
        ));
    }
}
