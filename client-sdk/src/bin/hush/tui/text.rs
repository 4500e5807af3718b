//! Terminal text: cell widths, control characters, wrapping styled text.

/// How a piece of text is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Default colours.
    Plain,
    /// Secondary text: ids, times, hints.
    Dim,
    /// A sender's name; the number picks its colour.
    Name(u8),
    /// This user's own name.
    Me,
    /// Something the user should notice: typing, errors, changed devices.
    Notice,
    /// Good news: online, read.
    Good,
    /// The header and the current conversation's tab.
    Bar,
}

/// A run of text in one style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: Style,
}

impl Span {
    pub fn new(text: impl Into<String>, style: Style) -> Self {
        Span {
            text: text.into(),
            style,
        }
    }
}

/// One screen row.
pub type Line = Vec<Span>;

/// The number of terminal cells `c` takes: 0 for combining marks and
/// joiners, 2 for East Asian wide characters and emoji, 1 otherwise. An
/// approximation of Unicode's tables that is right for the text a chat sees
/// most (Latin, CJK, emoji).
pub fn char_width(c: char) -> usize {
    let u = c as u32;
    match u {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F | 0xE0100..=0xE01EF => 0,
        0x1100..=0x115F
        | 0x231A..=0x231B
        | 0x23E9..=0x23EC
        | 0x23F0
        | 0x23F3
        | 0x25FD..=0x25FE
        | 0x2614..=0x2615
        | 0x2648..=0x2653
        | 0x267F
        | 0x2693
        | 0x26A1
        | 0x26AA..=0x26AB
        | 0x26BD..=0x26BE
        | 0x26C4..=0x26C5
        | 0x26CE
        | 0x26D4
        | 0x26EA
        | 0x26F2..=0x26F3
        | 0x26F5
        | 0x26FA
        | 0x26FD
        | 0x2705
        | 0x270A..=0x270B
        | 0x2728
        | 0x274C
        | 0x274E
        | 0x2753..=0x2755
        | 0x2757
        | 0x2795..=0x2797
        | 0x27B0
        | 0x27BF
        | 0x2B1B..=0x2B1C
        | 0x2B50
        | 0x2B55
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F004
        | 0x1F0CF
        | 0x1F18E
        | 0x1F191..=0x1F19A
        | 0x1F200..=0x1F251
        | 0x1F300..=0x1F64F
        | 0x1F680..=0x1F6FF
        | 0x1F7E0..=0x1F7EB
        | 0x1F90C..=0x1F9FF
        | 0x1FA70..=0x1FAFF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// The cells `s` takes.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Text from a peer (or anyone) made safe to print: control characters
/// (escape sequences could otherwise move the cursor or change the terminal)
/// become spaces.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `s` cut to at most `cells` cells, with `…` when cut.
pub fn fit(s: &str, cells: usize) -> String {
    if width(s) <= cells {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w + 1 > cells {
            break;
        }
        used += w;
        out.push(c);
    }
    if cells > 0 {
        out.push('…');
    }
    out
}

/// Wraps styled text into rows of at most `cells` cells, breaking after a
/// space where there is one and inside a word where there is not.
/// Continuation rows start with `indent` spaces.
pub fn wrap(spans: &[Span], cells: usize, indent: usize) -> Vec<Line> {
    let cells = cells.max(indent + 8);
    let mut rows: Vec<Line> = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let mut used = 0;
    for span in spans {
        for c in span.text.chars() {
            let w = char_width(c);
            if used + w > cells {
                // Break after the last space past the indent, if any.
                let split = row
                    .iter()
                    .rposition(|(ch, _)| *ch == ' ')
                    .filter(|&i| i >= indent && i + 1 < row.len());
                let carry = match split {
                    Some(i) => row.split_off(i + 1),
                    None => Vec::new(),
                };
                rows.push(merge(std::mem::take(&mut row)));
                row = vec![(' ', Style::Plain); indent];
                row.extend(carry);
                used = row.iter().map(|(ch, _)| char_width(*ch)).sum();
            }
            row.push((c, span.style));
            used += w;
        }
    }
    rows.push(merge(row));
    rows
}

fn merge(cells: Vec<(char, Style)>) -> Line {
    let mut line: Line = Vec::new();
    for (c, style) in cells {
        match line.last_mut() {
            Some(last) if last.style == style => last.text.push(c),
            _ => line.push(Span::new(c.to_string(), style)),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(line: &Line) -> String {
        line.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn widths() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("👍"), 2);
        assert_eq!(width("日本"), 4);
        assert_eq!(width("e\u{301}"), 1);
    }

    #[test]
    fn wraps_at_spaces_and_indents() {
        let rows = wrap(&[Span::new("alice: hello there my friend", Style::Plain)], 16, 2);
        let text: Vec<String> = rows.iter().map(plain).collect();
        assert_eq!(text, vec!["alice: hello ", "  there my ", "  friend"]);
        assert!(rows.iter().all(|r| width(&plain(r)) <= 16));
    }

    #[test]
    fn wraps_long_words_and_keeps_styles() {
        let rows = wrap(
            &[Span::new("ab ", Style::Dim), Span::new("x".repeat(20), Style::Plain)],
            10,
            0,
        );
        assert!(rows.iter().all(|r| width(&plain(r)) <= 10));
        assert_eq!(
            rows.iter().map(plain).collect::<String>(),
            format!("ab {}", "x".repeat(20))
        );
        assert_eq!(rows[0][0], Span::new("ab ", Style::Dim));
    }

    #[test]
    fn control_characters_are_not_printed() {
        assert_eq!(clean("a\x1b[2Jb\n"), "a [2Jb ");
        assert_eq!(fit("hello world", 6), "hello…");
    }
}
