//! Shared output: aligned tables, optional colour, times and durations.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use turnstile_core::Millis;

/// ANSI styles, applied only when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Red,
    Yellow,
    Green,
    Dim,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bold => Some("1"),
            Style::Red => Some("31"),
            Style::Yellow => Some("33"),
            Style::Green => Some("32"),
            Style::Dim => Some("2"),
        }
    }
}

/// Wraps `text` in `style` when `color` is on.
pub fn paint(text: &str, style: Style, color: bool) -> String {
    match style.code() {
        Some(c) if color => format!("\x1b[{c}m{text}\x1b[0m"),
        _ => text.to_owned(),
    }
}

/// One cell: its text and style (the style never changes its width).
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            style: Style::Plain,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

impl Cell {
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self {
            text: text.into(),
            style,
        }
    }
}

/// A table of one line per thing, columns aligned by two spaces. Hand-aligned: a table crate
/// would bring borders and wrapping this output does not want (lines must stay greppable).
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn write(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                let w = c.text.chars().count();
                match widths.get_mut(i) {
                    Some(have) => *have = (*have).max(w),
                    None => widths.push(w),
                }
            }
        }
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::styled(h.clone(), Style::Bold))
            .collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            let last = r.len().saturating_sub(1);
            for (i, c) in r.iter().enumerate() {
                line.push_str(&paint(&c.text, c.style, color));
                if i < last {
                    let w = widths.get(i).copied().unwrap_or(0);
                    let pad = w.saturating_sub(c.text.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// RFC 3339 UTC, seconds precision (`2026-01-02T03:04:05Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A record's time as RFC 3339 UTC.
pub fn at(m: Millis) -> String {
    let t = i64::try_from(m.0)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(DateTime::UNIX_EPOCH);
    rfc3339(t)
}

/// The current time as the core counts it.
pub fn millis(now: DateTime<Utc>) -> Millis {
    Millis(u64::try_from(now.timestamp_millis()).unwrap_or(0))
}

/// A duration in whole seconds, short: `42s`, `5m03s`, `2h05m`, `1d03h`.
pub fn dur(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `t` relative to `now`: `5m03s ago` or `in 2h05m`.
pub fn relative(t: Millis, now: Millis) -> String {
    if t <= now {
        format!("{} ago", dur(now.since(t) / 1000))
    } else {
        format!("in {}", dur(t.since(now) / 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short_and_exact_to_their_unit() {
        assert_eq!(dur(0), "0s");
        assert_eq!(dur(42), "42s");
        assert_eq!(dur(303), "5m03s");
        assert_eq!(dur(7500), "2h05m");
        assert_eq!(dur(97_200), "1d03h");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(at(Millis(1_000_000)), "1970-01-01T00:16:40Z");
    }

    #[test]
    fn tables_align_columns_and_colour_only_when_asked() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), Cell::styled("1", Style::Red)]);
        let mut plain = Vec::new();
        t.write(&mut plain, false).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&plain),
            "A    LONGER\nxyz  1\n",
            "two spaces after the widest cell"
        );
        let mut coloured = Vec::new();
        t.write(&mut coloured, true).unwrap_or_default();
        assert!(String::from_utf8_lossy(&coloured).contains("\x1b[31m1\x1b[0m"));
    }
}
