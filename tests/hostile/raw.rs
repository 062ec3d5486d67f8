//! Requests as raw bytes over TCP, one connection each, and the responses parsed back out of the
//! bytes the server wrote (interim 1xx skipped, pipelined answers included).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub enum Exchange {
    /// The final responses, in order.
    Answered(Vec<RawResponse>),
    /// The server closed (or reset) the connection without writing a byte.
    Closed,
    /// No complete answer in time.
    TimedOut,
    /// Bytes that are not an HTTP/1 response.
    Garbled(String),
}

/// Writes `request` and reads until the server closes. A request known to be incomplete is
/// half-closed at once (so that a short body ends at EOF instead of waiting); any other is
/// half-closed only if the server has said nothing for a second (half-closing early can make
/// the server drop an answer still being computed). `head` says the first answer has no body.
pub async fn exchange(addr: &str, request: &[u8], head: bool, incomplete: bool, limit: Duration) -> Exchange {
    let work = async {
        let Ok(mut s) = TcpStream::connect(addr).await else { return Exchange::Closed };
        // The server may answer and close before reading everything (431, 413): keep reading.
        let _ = s.write_all(request).await;
        let mut half_closed = incomplete;
        if incomplete {
            let _ = s.shutdown().await;
        }
        let mut data = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Err(_) if !half_closed => {
                    half_closed = true;
                    let _ = s.shutdown().await;
                }
                Err(_) => {}
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            }
            if data.len() > 64 * 1024 * 1024 {
                break;
            }
        }
        if data.is_empty() {
            return Exchange::Closed;
        }
        match parse_responses(&data, head) {
            Ok(r) if r.is_empty() => Exchange::Closed,
            Ok(r) => Exchange::Answered(r),
            Err(e) => Exchange::Garbled(e),
        }
    };
    tokio::time::timeout(limit, work).await.unwrap_or(Exchange::TimedOut)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_responses(mut data: &[u8], head: bool) -> Result<Vec<RawResponse>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = find(data, b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(&data[..data.len().min(200)])))?;
        let head_text = std::str::from_utf8(&data[..end]).map_err(|_| "head is not UTF-8".to_owned())?;
        data = &data[end + 4..];
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if (100..200).contains(&status) {
            continue;
        }
        let mut response = RawResponse { status, headers, body: Vec::new() };
        let no_body = (head && out.is_empty()) || status == 204 || status == 304;
        if !no_body {
            if response.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                loop {
                    let line_end = find(data, b"\r\n").ok_or("truncated chunk size")?;
                    let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
                    let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| format!("bad chunk size {size_text:?}"))?;
                    data = &data[line_end + 2..];
                    if size == 0 {
                        let trailer_end = find(data, b"\r\n").map_or(data.len(), |i| i + 2);
                        data = &data[trailer_end..];
                        break;
                    }
                    let take = size.min(data.len());
                    response.body.extend_from_slice(&data[..take]);
                    data = &data[(take + 2).min(data.len())..];
                }
            } else if let Some(len) = response.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
                let take = len.min(data.len());
                response.body = data[..take].to_vec();
                data = &data[take..];
            } else {
                response.body = data.to_vec();
                data = &[];
            }
        }
        out.push(response);
        if head {
            break;
        }
    }
    Ok(out)
}
