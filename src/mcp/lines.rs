//! Newline-delimited messages, as MCP's stdio transport frames them, read with a bound.

use std::io::{self, BufRead};

/// One line read by [`LineReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line's bytes, without its newline (and without a `\r` before it).
    Message(Vec<u8>),
    /// A line longer than the limit. Its bytes were read and dropped, never buffered:
    /// `size` is how many there were.
    TooLong {
        /// The line's length in bytes.
        size: usize,
    },
}

/// Reads newline-delimited messages of at most `limit` bytes each from any
/// [`BufRead`], holding at most `limit` bytes of any line in memory: a longer line,
/// or an endless one without a newline, costs no more than the limit.
///
/// Bytes need not be UTF-8: a line is handed over as bytes, so that one bad line gets an
/// answer and the stream goes on. Blank lines are skipped.
///
/// ```
/// use mcp_policy::mcp::{Line, LineReader};
///
/// let input = b"{\"a\":1}\n\n0123456789\r\n{}" as &[u8];
/// let mut lines = LineReader::new(input, 8);
/// assert_eq!(lines.next_line()?, Some(Line::Message(b"{\"a\":1}".to_vec())));
/// assert_eq!(lines.next_line()?, Some(Line::TooLong { size: 10 }));
/// assert_eq!(lines.next_line()?, Some(Line::Message(b"{}".to_vec())));
/// assert_eq!(lines.next_line()?, None);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    limit: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Reads lines from `inner`, each at most `limit` bytes.
    pub fn new(inner: R, limit: usize) -> LineReader<R> {
        LineReader { inner, limit }
    }

    /// The next non-blank line, or `None` at the end of the input. A last line without a
    /// newline counts as a line.
    ///
    /// # Errors
    /// The underlying reader's error (other than `Interrupted`, which is retried).
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let mut buffer = Vec::new();
            let mut size = 0usize;
            let mut ended = false;
            let mut last = None;
            loop {
                let chunk = match self.inner.fill_buf() {
                    Ok(chunk) => chunk,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    ended = true;
                    break;
                }
                let (part, used, complete) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(at) => (chunk.get(..at).unwrap_or_default(), at + 1, true),
                    None => (chunk, chunk.len(), false),
                };
                size = size.saturating_add(part.len());
                last = part.last().copied().or(last);
                // Keep one byte past the limit so a trailing `\r` can still be trimmed.
                if buffer.len() <= self.limit {
                    let room = self.limit + 1 - buffer.len();
                    buffer.extend_from_slice(part.get(..room.min(part.len())).unwrap_or(part));
                }
                self.inner.consume(used);
                if complete {
                    break;
                }
            }
            if last == Some(b'\r') {
                size -= 1;
                if buffer.len() > size {
                    buffer.pop();
                }
            }
            if size == 0 || buffer.iter().all(u8::is_ascii_whitespace) && size <= self.limit {
                if ended {
                    return Ok(None);
                }
                continue;
            }
            if size > self.limit {
                return Ok(Some(Line::TooLong { size }));
            }
            return Ok(Some(Line::Message(buffer)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], limit: usize) -> Vec<Line> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(3, input), limit);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn splits_lines_across_small_buffers() {
        assert_eq!(
            all(b"abcdef\nxy\r\n \n\nz", 6),
            [
                Line::Message(b"abcdef".to_vec()),
                Line::Message(b"xy".to_vec()),
                Line::Message(b"z".to_vec()),
            ]
        );
    }

    #[test]
    fn long_lines_are_counted_not_kept() {
        assert_eq!(
            all(b"abcdefg\nok\nabcdef\r\n", 6),
            [
                Line::TooLong { size: 7 },
                Line::Message(b"ok".to_vec()),
                Line::Message(b"abcdef".to_vec()),
            ]
        );
        let endless = vec![b'x'; 100_000];
        assert_eq!(all(&endless, 10), [Line::TooLong { size: 100_000 }]);
    }

    #[test]
    fn invalid_utf8_is_handed_over_as_bytes() {
        assert_eq!(
            all(b"\xff\xfe\n{}\n", 100),
            [
                Line::Message(b"\xff\xfe".to_vec()),
                Line::Message(b"{}".to_vec())
            ]
        );
    }
}
