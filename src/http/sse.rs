//! Server-sent events, parsed as the SSE specification says: lines end in CR, LF or
//! CRLF; an event ends at a blank line; `data` lines join with LF; a leading BOM is
//! dropped. Incremental and linear: each byte is looked at once, however the stream is
//! cut into chunks.
//!
//! Written here rather than taken from `sse-stream` or `eventsource-stream` because a
//! gateway needs three things neither gives: a bound on an event's size (both buffer an
//! endless line or endless `data` lines from a hostile upstream without limit); the
//! lines other than `data` kept as they came, so that `id`, `retry`, comments and unknown
//! fields reach the client unchanged and in order; and the specification's leniency
//! (`sse-stream` ends the stream on an unknown field, a line without a colon, or a
//! repeated `id`, which the specification says to ignore or take the last of).

/// One event: its `data` (lines joined with LF), and its other lines as they came
/// (`id`, `event`, `retry`, comments), to be written back unchanged.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) other: Vec<Vec<u8>>,
}

impl Event {
    /// The event written back with LF line endings and `data` replaced by `message`
    /// (dropped when `None`).
    pub(crate) fn write(&self, message: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.other {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if let Some(message) = message {
            // A message the relay wrote is one line of JSON: one `data` line.
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(message.as_bytes());
            out.push(b'\n');
        }
        if !out.is_empty() {
            out.push(b'\n');
        }
        out
    }
}

/// UTF-8's byte order mark, dropped at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream cannot be parsed on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// The parser's state between chunks.
#[derive(Debug)]
pub(crate) struct Parser {
    /// The line being read.
    line: Vec<u8>,
    /// The event being read.
    event: Event,
    /// Bytes held for the current event (its lines so far and the line being read).
    held: usize,
    max: usize,
    /// The last byte was a CR: an LF right after it ends nothing more.
    after_cr: bool,
    /// Past the stream's first bytes, where a BOM is dropped.
    started: bool,
    /// The first bytes, held until they show whether they are a BOM.
    head: Vec<u8>,
    /// `data` lines read for the current event.
    data_lines: usize,
}

impl Parser {
    /// A parser that refuses an event of more than `max` bytes.
    pub(crate) fn new(max: usize) -> Parser {
        Parser {
            line: Vec::new(),
            event: Event::default(),
            held: 0,
            max,
            after_cr: false,
            started: false,
            head: Vec::new(),
            data_lines: 0,
        }
    }

    /// Reads `chunk`, handing each complete event to `emit`.
    pub(crate) fn feed(
        &mut self,
        mut chunk: &[u8],
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TooLarge> {
        if !self.started {
            let take = (BOM.len() - self.head.len()).min(chunk.len());
            let (first, rest) = chunk.split_at(take);
            self.head.extend_from_slice(first);
            chunk = rest;
            if BOM.starts_with(&self.head) && self.head.len() < BOM.len() {
                return Ok(());
            }
            self.started = true;
            let head = std::mem::take(&mut self.head);
            if head != BOM {
                self.lines(&head, emit)?;
            }
        }
        self.lines(chunk, emit)
    }

    /// Reads `chunk` past the stream's start.
    fn lines(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Event)) -> Result<(), TooLarge> {
        let mut start = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            if byte != b'\r' && byte != b'\n' {
                continue;
            }
            let skip = byte == b'\n' && self.after_cr && start == i && self.line.is_empty();
            self.after_cr = byte == b'\r';
            if skip {
                start = i + 1;
                continue;
            }
            self.take(chunk.get(start..i).unwrap_or_default())?;
            self.end_line(emit);
            start = i + 1;
        }
        let rest = chunk.get(start..).unwrap_or_default();
        if !rest.is_empty() {
            self.after_cr = false;
            self.take(rest)?;
        }
        Ok(())
    }

    /// The stream ended: an event without its blank line is not dispatched (SSE drops
    /// it); its other lines are returned so a relay can still pass them on.
    pub(crate) fn finish(self) -> Event {
        Event {
            data: None,
            other: self.event.other,
        }
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        self.held = self.held.saturating_add(bytes.len());
        if self.held > self.max {
            return Err(TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, emit: &mut dyn FnMut(Event)) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            self.held = 0;
            self.data_lines = 0;
            if event.data.is_some() || !event.other.is_empty() {
                emit(event);
            }
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (field, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line.as_slice(), &[][..]),
        };
        if field == b"data" {
            let data = self.event.data.get_or_insert_with(Vec::new);
            if self.data_lines > 0 {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            self.data_lines += 1;
        } else {
            self.event.other.push(line);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut |e| out.push(e)).unwrap();
        }
        out
    }

    fn data(event: &Event) -> &[u8] {
        event.data.as_deref().unwrap()
    }

    #[test]
    fn lines_end_in_cr_lf_or_crlf_however_the_stream_is_cut() {
        let text: &[u8] = b"\xEF\xBB\xBFid: 1\rdata: {\"a\":1}\r\revent: message\r\ndata: x\r\ndata: y\r\n\r\ndata\ndata:\n\n";
        let whole = events(&[text]);
        let bytewise: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events(&bytewise), whole);
        assert_eq!(whole.len(), 3);
        assert_eq!(data(&whole[0]), br#"{"a":1}"#);
        assert_eq!(whole[0].other, [b"id: 1".to_vec()]);
        assert_eq!(data(&whole[1]), b"x\ny");
        assert_eq!(data(&whole[2]), b"\n");
    }

    #[test]
    fn an_event_over_the_bound_is_refused_and_big_events_cost_linear_time() {
        let mut parser = Parser::new(100);
        assert_eq!(parser.feed(&[b'x'; 101], &mut |_| {}), Err(TooLarge));
        // 2 MB in 64-byte chunks: each byte is looked at once.
        let mut parser = Parser::new(4 << 20);
        let mut body = b"data: ".to_vec();
        body.extend(std::iter::repeat(b'a').take(2 << 20));
        body.extend_from_slice(b"\n\n");
        let mut got = 0;
        for chunk in body.chunks(64) {
            parser
                .feed(chunk, &mut |e| got += e.data.unwrap().len())
                .unwrap();
        }
        assert_eq!(got, 2 << 20);
    }
}
