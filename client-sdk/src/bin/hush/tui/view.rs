//! The screen, row by row, from the state. No I/O, so it is tested as text.
//!
//! ```text
//!  hush · alice │ bob ● online                 connected (websocket)   header
//!   bob  team (2)                                                      conversations
//!  ── start of the conversation ──                                     messages
//!  3f2a 14:02 alice: hello bob (edited) [👍 bob] ✓ read                 (PgUp/PgDn)
//!  91c0 14:03 bob: hi!
//!  ───────────────────────────────────────────                         rule
//!  bob is typing…                                                      typing
//!  Enter sends · Tab switches conversation · PgUp/PgDn scroll · /help  notice
//!  > what a nice day_                                                  input
//! ```

use hush_sdk::Message;
use time::{OffsetDateTime, UtcOffset};

use super::state::App;
use super::text::{Line, Span, Style, clean, fit, width, wrap};

/// Rows that are not the message pane: header, conversations, rule,
/// typing, notice, input.
const CHROME: usize = 6;

/// The message pane's height on a screen of `rows` rows.
pub fn pane_height(rows: usize) -> usize {
    rows.saturating_sub(CHROME).max(1)
}

/// Times shown in the local time zone (an offset found at start-up).
#[derive(Clone, Copy)]
pub struct Clock {
    pub offset: UtcOffset,
}

impl Clock {
    fn at(&self, ms: u64) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(|t| t.to_offset(self.offset))
    }

    /// `14:02`.
    pub fn hm(&self, ms: u64) -> String {
        self.at(ms)
            .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
            .unwrap_or_else(|| "--:--".into())
    }

    /// `2025-06-02`.
    pub fn day(&self, ms: u64) -> String {
        self.at(ms)
            .map(|t| format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
            .unwrap_or_default()
    }
}

/// The whole screen: `rows` lines and where the cursor goes.
pub struct Screen {
    pub lines: Vec<Line>,
    pub cursor: (u16, u16),
}

/// The colour of a sender's name: the same user always gets the same one.
fn name_style(app: &App, user: &str) -> Style {
    if user == app.me.0 {
        return Style::Me;
    }
    let h = user
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Style::Name((h % 6) as u8)
}

/// A message as spans (before wrapping).
fn message_spans(app: &App, m: &Message, clock: &Clock, direct: bool) -> Vec<Span> {
    let mut s = vec![
        Span::new(format!("{} ", m.id.get(..4).unwrap_or(&m.id)), Style::Dim),
        Span::new(format!("{} ", clock.hm(m.sent_at_ms)), Style::Dim),
        Span::new(clean(&m.sender.user.0), name_style(app, &m.sender.user.0)),
        Span::new(": ", Style::Plain),
    ];
    if m.deleted {
        s.push(Span::new("(deleted)", Style::Dim));
    } else {
        s.push(Span::new(clean(&m.text), Style::Plain));
        if m.edited {
            s.push(Span::new(" (edited)", Style::Dim));
        }
    }
    if m.deleted {
        return s;
    }
    for (emoji, users) in &m.reactions {
        let who: Vec<String> = users.iter().map(|u| clean(&u.0)).collect();
        s.push(Span::new(format!(" [{} ", clean(emoji)), Style::Plain));
        s.push(Span::new(who.join(","), Style::Dim));
        s.push(Span::new("]", Style::Plain));
    }
    if m.own && !m.read_by.is_empty() {
        let text = if direct {
            " ✓ read".to_owned()
        } else {
            let who: Vec<String> = m.read_by.iter().map(|u| clean(&u.0)).collect();
            format!(" ✓ read by {}", who.join(", "))
        };
        s.push(Span::new(text, Style::Good));
    }
    s
}

/// Width of the id and time columns: continuation rows are indented by it.
const INDENT: usize = 11;

/// Every row of the current conversation's message pane, oldest first.
pub fn message_lines(app: &App, cols: usize, clock: &Clock) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let Some(conv) = app.conversation() else {
        return out;
    };
    let direct = conv.direct_with.is_some();
    let rule = |text: String| vec![Span::new(fit(&format!("── {text} ──"), cols), Style::Dim)];
    if app.complete {
        out.push(rule(format!("start of the conversation with {}", clean(&conv.label))));
    } else if !app.messages.is_empty() {
        out.push(rule("PgUp for older messages".into()));
    }
    let mut day = String::new();
    for m in &app.messages {
        let d = clock.day(m.sent_at_ms);
        if d != day {
            out.push(rule(d.clone()));
            day = d;
        }
        out.extend(wrap(&message_spans(app, m, clock, direct), cols, INDENT));
    }
    for (_, _, text) in app.pending.iter().filter(|(g, _, _)| *g == conv.group) {
        let spans = vec![
            Span::new("···· --:-- ", Style::Dim),
            Span::new(clean(&app.me.0), Style::Me),
            Span::new(": ", Style::Plain),
            Span::new(clean(text), Style::Plain),
            Span::new(" (sending…)", Style::Dim),
        ];
        out.extend(wrap(&spans, cols, INDENT));
    }
    out
}

/// The header's middle: the conversation and its people's presence.
fn header_spans(app: &App, clock: &Clock, now_ms: u64) -> Vec<Span> {
    let Some(conv) = app.conversation() else {
        return vec![Span::new("no conversation yet: /dm USER starts one", Style::Bar)];
    };
    let partners = app.partners();
    match (&conv.direct_with, partners.as_slice()) {
        (Some(_), [(user, seen)]) => {
            let mut s = vec![Span::new(format!("{} ", clean(user)), Style::Bar)];
            match seen {
                Some(p) if p.online => s.push(Span::new("● online", Style::Good)),
                Some(p) if p.last_seen_ms > 0 => {
                    let when = if clock.day(p.last_seen_ms) == clock.day(now_ms) {
                        clock.hm(p.last_seen_ms)
                    } else {
                        clock.day(p.last_seen_ms)
                    };
                    s.push(Span::new(format!("○ last seen {when}"), Style::Bar));
                }
                Some(_) => s.push(Span::new("○ offline", Style::Bar)),
                None => {}
            }
            s
        }
        _ => {
            let online = partners
                .iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.online))
                .count();
            vec![Span::new(
                format!(
                    "{} · {} other{}, {online} online",
                    clean(&conv.label),
                    partners.len(),
                    if partners.len() == 1 { "" } else { "s" }
                ),
                Style::Bar,
            )]
        }
    }
}

/// Lays `spans` out in exactly `cols` cells (cut, or padded in `pad` style).
fn exact(spans: Vec<Span>, cols: usize, pad: Style) -> Line {
    let mut out = Vec::new();
    let mut used = 0;
    for s in spans {
        let left = cols.saturating_sub(used);
        if left == 0 {
            break;
        }
        let text = fit(&s.text, left);
        used += width(&text);
        out.push(Span::new(text, s.style));
    }
    if used < cols {
        out.push(Span::new(" ".repeat(cols - used), pad));
    }
    out
}

/// Renders the whole screen for a terminal of `cols` × `rows`.
pub fn render(app: &App, cols: usize, rows: usize, clock: &Clock, now_ms: u64) -> Screen {
    if cols < 20 || rows < CHROME + 1 {
        return Screen {
            lines: vec![vec![Span::new(fit("terminal too small", cols), Style::Notice)]],
            cursor: (0, 0),
        };
    }
    let mut lines: Vec<Line> = Vec::with_capacity(rows);

    // Header: who I am, the conversation, the connection (right-aligned).
    let mut head = vec![Span::new(format!(" hush · {} │ ", clean(&app.me.0)), Style::Bar)];
    head.extend(header_spans(app, clock, now_ms));
    let right = format!(" {} ", app.connection);
    let used: usize = head.iter().map(|s| width(&s.text)).sum();
    if used + width(&right) < cols {
        head.push(Span::new(" ".repeat(cols - used - width(&right)), Style::Bar));
        head.push(Span::new(right, Style::Bar));
    }
    lines.push(exact(head, cols, Style::Bar));

    // Conversations.
    let mut tabs = vec![Span::new(" ", Style::Plain)];
    for (i, c) in app.conversations.iter().enumerate() {
        let style = if Some(i) == app.current {
            Style::Bar
        } else if c.unread > 0 {
            Style::Notice
        } else {
            Style::Dim
        };
        let label = if c.unread > 0 {
            format!(" {} ({}) ", clean(&c.label), c.unread)
        } else {
            format!(" {} ", clean(&c.label))
        };
        tabs.push(Span::new(label, style));
        tabs.push(Span::new(" ", Style::Plain));
    }
    lines.push(exact(tabs, cols, Style::Plain));

    // The notice (or what the keys do) may take up to three rows (`/help`);
    // the message pane gives them up.
    let notice: Vec<Line> = match &app.notice {
        Some(n) => wrap(&[Span::new(clean(n), Style::Notice)], cols, 2)
            .into_iter()
            .take(3)
            .collect(),
        None => vec![vec![Span::new(
            fit(
                "Enter sends · Tab switches conversation · PgUp/PgDn scroll · /help · /quit",
                cols,
            ),
            Style::Dim,
        )]],
    };

    // Messages, bottom-aligned, `scroll` rows up from the newest.
    let pane = pane_height(rows).saturating_sub(notice.len() - 1).max(1);
    let all = message_lines(app, cols, clock);
    let scroll = app.scroll.min(all.len().saturating_sub(pane));
    let end = all.len() - scroll;
    let start = end.saturating_sub(pane);
    for _ in 0..pane - (end - start) {
        lines.push(Vec::new());
    }
    lines.extend(all[start..end].iter().cloned());

    // Rule, with a hint when scrolled up.
    let rule = if scroll > 0 {
        format!("── ↓ {scroll} newer rows below: PgDn, End ")
    } else {
        String::new()
    };
    let rule = format!("{rule}{}", "─".repeat(cols.saturating_sub(width(&rule))));
    lines.push(vec![Span::new(rule, Style::Dim)]);

    // Typing.
    let typing = app.typing_here();
    lines.push(match typing.as_slice() {
        [] => Vec::new(),
        [one] => vec![Span::new(
            fit(&format!("{} is typing…", clean(one)), cols),
            Style::Notice,
        )],
        many => vec![Span::new(
            fit(&format!("{} are typing…", clean(&many.join(", "))), cols),
            Style::Notice,
        )],
    });

    lines.extend(notice);

    // Input, scrolled sideways so the cursor stays visible.
    let prompt = "> ";
    let room = cols - width(prompt) - 1;
    let before: String = app.input[..app.cursor.min(app.input.len())].iter().collect();
    let mut skip = 0;
    while width(&before.chars().skip(skip).collect::<String>()) > room {
        skip += 1;
    }
    let shown: String = clean(&app.input.iter().skip(skip).collect::<String>());
    let cursor_col = width(prompt) + width(&before.chars().skip(skip).collect::<String>());
    lines.push(exact(
        vec![Span::new(prompt, Style::Me), Span::new(shown, Style::Plain)],
        cols,
        Style::Plain,
    ));
    Screen {
        cursor: (
            u16::try_from(cursor_col).unwrap_or(0),
            u16::try_from(rows - 1).unwrap_or(0),
        ),
        lines,
    }
}

/// The rows as plain text (tests).
#[cfg(test)]
pub fn plain(screen: &Screen) -> Vec<String> {
    screen
        .lines
        .iter()
        .map(|l| {
            l.iter()
                .map(|s| s.text.as_str())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hush_sdk::{DeviceId, Event, GroupId, GroupSummary, Member, UserId};
    use std::collections::BTreeMap;
    use std::time::Instant;

    fn member(user: &str, d: u8) -> Member {
        Member {
            user: UserId(user.into()),
            device: DeviceId([d; 16]),
        }
    }

    #[test]
    fn a_conversation_on_screen() {
        let g = GroupId(vec![1]);
        let mut app = App::new(UserId("alice".into()));
        app.set_groups(vec![GroupSummary {
            group: g.clone(),
            name: "bob".into(),
            direct_with: Some("bob".into()),
            own_devices: false,
            members: vec![member("alice", 1), member("bob", 2)],
            seq: 2,
            verified: false,
            unverified_members: 0,
            shared_name: false,
        }]);
        let mut reactions = BTreeMap::new();
        reactions.insert("👍".to_owned(), vec![UserId("bob".into())]);
        let mine = Message {
            group: g.clone(),
            seq: 1,
            id: "3f2a".repeat(8),
            sender: member("alice", 1),
            own: true,
            sent_at_ms: 60_000 * 62,
            relay_at_ms: 0,
            text: "hello bob".into(),
            reply_to: None,
            edited: true,
            deleted: false,
            reactions,
            read_by: vec![UserId("bob".into())],
        };
        let gone = Message {
            seq: 2,
            id: "91c0".repeat(8),
            sender: member("bob", 2),
            own: false,
            text: String::new(),
            edited: false,
            deleted: true,
            reactions: BTreeMap::new(),
            read_by: Vec::new(),
            ..mine.clone()
        };
        app.show(0, vec![gone, mine], 50);
        let now = Instant::now();
        app.apply(
            Event::Typing {
                group: g.clone(),
                by: member("bob", 2),
                active: true,
            },
            now,
        );
        app.apply(
            Event::Presence {
                member: member("bob", 2),
                online: true,
                last_seen_ms: 0,
            },
            now,
        );
        app.input = "hi".chars().collect();
        app.cursor = 2;
        let clock = Clock { offset: UtcOffset::UTC };
        let screen = render(&app, 60, 12, &clock, 0);
        let text = plain(&screen);
        assert_eq!(text.len(), 12);
        assert!(text[0].contains("hush · alice │ bob ● online"), "{text:#?}");
        assert_eq!(text[1].trim(), "bob");
        assert!(
            text.iter()
                .any(|l| l == "3f2a 01:02 alice: hello bob (edited) [👍 bob] ✓ read"),
            "{text:#?}"
        );
        assert!(text.iter().any(|l| l == "91c0 01:02 bob: (deleted)"), "{text:#?}");
        assert_eq!(text[9], "bob is typing…");
        assert_eq!(text[11], "> hi");
        assert_eq!(screen.cursor, (4, 11));
    }
}
