//! A small HTTP/1.1 client over `TcpStream`, written by hand so a test controls every
//! byte: the raw path goes out exactly as given, headers are ordered pairs (repeats
//! allowed), bodies go with Content-Length or chunked, and the answer keeps its header
//! lines as they came. It also measures the time to the first body byte and in total.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A broken server fails the test after this long instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request body goes on the wire.
pub enum Body {
    Empty,
    /// Sent with `Content-Length`.
    Fixed(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, one chunk per piece.
    Chunked(Vec<Vec<u8>>),
}

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        let (method, path) = (method.to_string(), path.to_string());
        Request {
            method,
            path,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Fixed(bytes.into());
        self
    }

    pub fn chunked(mut self, pieces: Vec<Vec<u8>>) -> Self {
        self.body = Body::Chunked(pieces);
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines in the order they arrived, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From the start of the request to the first body byte (to the end of the head
    /// when there is no body).
    pub ttfb: Duration,
    pub total: Duration,
}

impl Response {
    /// The values of every line named `name`, joined with ", " as `Headers.get()` does.
    pub fn header(&self, name: &str) -> Option<String> {
        let lines = self.header_lines(name);
        (!lines.is_empty()).then(|| lines.join(", "))
    }

    /// The value of each line named `name`, separately and in order.
    pub fn header_lines(&self, name: &str) -> Vec<&str> {
        let named = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        named.map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request on a fresh connection with `Connection: close`.
pub fn send(addr: SocketAddr, request: &Request) -> io::Result<Response> {
    let mut conn = Connection::open(addr)?;
    if request.has_header("connection") {
        return conn.send(request);
    }
    let mut headers = request.headers.clone();
    headers.push(("Connection".to_string(), "close".to_string()));
    conn.send_with(request, &headers)
}

/// One TCP connection that can carry several requests (keep-alive).
pub struct Connection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Connection {
            addr,
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn send(&mut self, request: &Request) -> io::Result<Response> {
        self.send_with(request, &request.headers)
    }

    fn send_with(
        &mut self,
        request: &Request,
        headers: &[(String, String)],
    ) -> io::Result<Response> {
        let start = Instant::now();

        // A server may answer (413, say) and close before reading the whole body; its
        // answer matters more than our broken pipe, so read it before giving up.
        let written = self.write_request(request, headers);
        match self.read_response(&request.method, start) {
            Ok(response) => Ok(response),
            Err(read_err) => Err(written.err().unwrap_or(read_err)),
        }
    }

    fn write_request(&mut self, request: &Request, headers: &[(String, String)]) -> io::Result<()> {
        let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
        if !request.has_header("host") {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match &request.body {
            Body::Fixed(bytes) if !request.has_header("content-length") => {
                head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
            }
            Body::Chunked(_) if !request.has_header("transfer-encoding") => {
                head.push_str("Transfer-Encoding: chunked\r\n");
            }
            _ => {}
        }
        head.push_str("\r\n");

        let w = &mut self.writer;
        w.write_all(head.as_bytes())?;
        match &request.body {
            Body::Empty => {}
            Body::Fixed(bytes) => w.write_all(bytes)?,
            Body::Chunked(pieces) => {
                // Each piece is flushed on its own so the server sees separate chunks.
                for piece in pieces.iter().filter(|p| !p.is_empty()) {
                    w.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                    w.write_all(piece)?;
                    w.write_all(b"\r\n")?;
                    w.flush()?;
                }
                w.write_all(b"0\r\n\r\n")?;
            }
        }
        w.flush()
    }

    fn read_response(&mut self, method: &str, start: Instant) -> io::Result<Response> {
        // Interim answers (100 Continue) are skipped.
        let (status, headers) = loop {
            let line = self.read_line()?;
            let status = parse_status_line(&line)?;
            let headers = self.read_headers()?;
            if !(100..200).contains(&status) || status == 101 {
                break (status, headers);
            }
        };
        let find = |name: &str| {
            let mut values = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
            values.next().map(|(_, v)| v.trim().to_ascii_lowercase())
        };

        let bodiless = method.eq_ignore_ascii_case("HEAD")
            || matches!(status, 204 | 304)
            || find("content-length").as_deref() == Some("0");
        let mut ttfb = start.elapsed();
        if !bodiless {
            self.reader.fill_buf()?;
            ttfb = start.elapsed();
        }
        let body = if bodiless {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            self.read_chunked()?
        } else if let Some(length) = find("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| bad(format!("content-length {length}")))?;
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            self.reader.read_to_end(&mut body)?;
            body
        };
        Ok(Response {
            status,
            headers,
            body,
            ttfb,
            total: start.elapsed(),
        })
    }

    fn read_headers(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut headers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(headers);
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("header {line:?}")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| bad(format!("chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            let at = body.len();
            body.resize(at + size, 0);
            self.reader.read_exact(&mut body[at..])?;
            if !self.read_line()?.is_empty() {
                return Err(bad("chunk not followed by CRLF".to_string()));
            }
        }
    }

    /// One line without its CRLF; an error at end of stream.
    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            let eof = "connection closed before the response was complete";
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, eof));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    match code.parse() {
        Ok(code) if version.starts_with("HTTP/1.") => Ok(code),
        _ => Err(bad(format!("status line {line:?}"))),
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed response: {what}"),
    )
}
