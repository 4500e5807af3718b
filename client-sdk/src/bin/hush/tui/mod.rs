//! `hush chat` on a terminal: the full-screen client.
//!
//! One loop owns the screen. It waits for whichever comes first: a key, an
//! SDK event, the result of a slow request it started in the background
//! (creating a conversation, inviting, asking who is online), a signal, or
//! a one-second tick (typing indicators expire); it applies it to the state
//! (`state.rs`) and redraws the rows that changed (`view.rs`).
//!
//! The terminal is put back (raw mode off, main screen back) when the loop
//! ends, when it fails, and when the process panics.

mod command;
mod state;
mod text;
mod view;

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crossterm::event::{Event as TermEvent, EventStream as KeyStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{
    BeginSynchronizedUpdate, Clear, ClearType, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute, queue};
use futures_util::StreamExt as _;
use hush_sdk::{Client, DeviceId, GroupId};
use tokio::sync::mpsc;

use command::Input;
use state::{App, Seen};
pub use text::clean;
use text::{Line, Style};
pub use view::Clock;
use view::{Screen, message_lines, pane_height};

/// Messages read from history at a time (first screen, and each PgUp past
/// the oldest loaded one).
const PAGE: usize = 100;
/// While the user types, "typing" is re-sent this often (a receiver drops
/// an indicator not refreshed for `state::TYPING_EXPIRES`).
const TYPING_REFRESH: Duration = Duration::from_secs(3);
/// No key for this long while "typing" was sent: send "stopped".
const TYPING_IDLE: Duration = Duration::from_secs(5);

/// What a background request reports back to the loop.
enum Outcome {
    Notice(String),
    Presence(Vec<(DeviceId, Seen)>),
    /// Show this conversation (just created or opened).
    Open(GroupId),
}

/// Runs the full-screen client until `/quit`, Ctrl-C or a signal, starting
/// in `start` (or the first conversation).
pub async fn run(client: &Client, start: Option<GroupId>, clock: Clock) -> Result<()> {
    let mut events = client.events();
    let mut ui = Ui::new(client.clone(), clock);
    ui.refresh_groups().await?;
    let first = match start {
        Some(g) => ui.app.conversations.iter().position(|c| c.group == g),
        None => (!ui.app.conversations.is_empty()).then_some(0),
    };
    if let Some(i) = first {
        ui.switch(i).await?;
    }
    if client.is_connected() {
        ui.app.connection = match client.transport() {
            Some(t) => format!("connected ({t})"),
            None => "connected".into(),
        };
    }

    let mut term = Terminal::enter().context("setting up the terminal")?;
    let mut keys = KeyStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term_signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    while !ui.app.quit {
        term.draw(&ui.screen()?)?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => ui.on_key(k, &mut term).await?,
                Some(Ok(TermEvent::Resize(..))) => term.invalidate(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            ev = events.next() => match ev {
                Some(ev) => ui.on_event(ev).await?,
                None => break,
            },
            Some(out) = ui.outcomes.recv() => ui.on_outcome(out).await?,
            _ = tick.tick() => ui.on_tick().await,
            _ = term_signal.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    ui.stop_typing().await;
    drop(term);
    Ok(())
}

/// The loop's state: the app state, the client, and what the loop tracks
/// for typing signals.
struct Ui {
    client: Client,
    app: App,
    clock: Clock,
    /// When "typing" was last sent, while it is on.
    typing_sent: Option<Instant>,
    last_key: Instant,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    report: mpsc::UnboundedSender<Outcome>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Ui {
    fn new(client: Client, clock: Clock) -> Self {
        let (report, outcomes) = mpsc::unbounded_channel();
        Ui {
            app: App::new(client.user().clone()),
            client,
            clock,
            typing_sent: None,
            last_key: Instant::now(),
            outcomes,
            report,
        }
    }

    fn size() -> (usize, usize) {
        crossterm::terminal::size()
            .map(|(c, r)| (usize::from(c), usize::from(r)))
            .unwrap_or((80, 24))
    }

    fn screen(&mut self) -> Result<Screen> {
        let (cols, rows) = Self::size();
        Ok(view::render(&self.app, cols, rows, &self.clock, now_ms()))
    }

    async fn refresh_groups(&mut self) -> Result<()> {
        let groups = self.client.groups().await?;
        self.app.set_groups(groups);
        Ok(())
    }

    /// Shows conversation `index`: its newest page of history, marked read.
    async fn switch(&mut self, index: usize) -> Result<()> {
        let Some(group) = self.app.conversations.get(index).map(|c| c.group.clone()) else {
            return Ok(());
        };
        self.stop_typing().await;
        let page = self.client.history(&group, None, PAGE).await?;
        self.app.show(index, page, PAGE);
        self.app.notice = None;
        self.mark_read().await;
        self.ask_presence();
        Ok(())
    }

    async fn mark_read(&self) {
        if let Some(g) = self.app.group() {
            // Offline, the receipt waits in the outbox; nothing to report.
            let _ = self.client.mark_read(g).await;
        }
    }

    /// Starts a request in the background; its result comes back as an
    /// [`Outcome`] so the screen stays live meanwhile.
    fn background<F>(&self, work: impl FnOnce(Client) -> F)
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        let report = self.report.clone();
        let fut = work(self.client.clone());
        tokio::spawn(async move {
            let _ = report.send(fut.await);
        });
    }

    fn ask_presence(&self) {
        let Some(g) = self.app.group().cloned() else {
            return;
        };
        self.background(|client| async move {
            match client.presence(&g).await {
                Ok(list) => Outcome::Presence(
                    list.into_iter()
                        .map(|p| {
                            (
                                p.device,
                                Seen {
                                    user: p.user,
                                    online: p.online,
                                    last_seen_ms: p.last_seen_ms,
                                },
                            )
                        })
                        .collect(),
                ),
                // Offline: presence arrives once connected.
                Err(_) => Outcome::Presence(Vec::new()),
            }
        });
    }

    async fn on_event(&mut self, ev: hush_sdk::Event) -> Result<()> {
        let follow = self.app.apply(ev, Instant::now());
        if follow.groups {
            self.refresh_groups().await?;
        }
        if follow.reload
            && let Some(i) = self.app.current
        {
            let scroll = self.app.scroll;
            self.switch(i).await?;
            self.app.scroll = scroll;
        }
        if follow.mark_read && self.app.scroll == 0 {
            self.mark_read().await;
        }
        if follow.presence {
            self.ask_presence();
        }
        Ok(())
    }

    async fn on_outcome(&mut self, out: Outcome) -> Result<()> {
        match out {
            Outcome::Notice(n) => self.app.notice = Some(n),
            Outcome::Presence(list) => self.app.presence.extend(list),
            Outcome::Open(group) => {
                self.refresh_groups().await?;
                if let Some(i) = self.app.conversations.iter().position(|c| c.group == group) {
                    self.switch(i).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_tick(&mut self) {
        self.app.expire(Instant::now());
        if self.typing_sent.is_some() && self.last_key.elapsed() >= TYPING_IDLE {
            self.stop_typing().await;
        }
    }

    /// Sends "typing" while the input holds a message being written, and
    /// "stopped" once it does not.
    async fn update_typing(&mut self) {
        let writing = !self.app.input.is_empty() && self.app.input.first() != Some(&'/');
        let Some(g) = self.app.group().cloned() else {
            return;
        };
        match self.typing_sent {
            Some(at) if writing && at.elapsed() < TYPING_REFRESH => {}
            _ if writing => {
                self.typing_sent = Some(Instant::now());
                let _ = self.client.typing(&g, true).await;
            }
            Some(_) => self.stop_typing().await,
            None => {}
        }
    }

    async fn stop_typing(&mut self) {
        if self.typing_sent.take().is_some()
            && let Some(g) = self.app.group()
        {
            let _ = self.client.typing(g, false).await;
        }
    }

    /// Scrolls by `delta` rows (up is positive); reading older history when
    /// the top of what is loaded comes into view.
    async fn scroll(&mut self, delta: isize) -> Result<()> {
        let (cols, rows) = Self::size();
        let pane = pane_height(rows);
        self.app.scroll = self.app.scroll.saturating_add_signed(delta);
        loop {
            let total = message_lines(&self.app, cols, &self.clock).len();
            if self.app.scroll + pane < total || self.app.complete {
                self.app.scroll = self.app.scroll.min(total.saturating_sub(pane));
                break;
            }
            let (Some(g), Some(before)) = (self.app.group().cloned(), self.app.oldest_seq()) else {
                self.app.complete = true;
                continue;
            };
            let page = self.client.history(&g, Some(before), PAGE).await?;
            self.app.prepend(page, PAGE);
        }
        if self.app.scroll == 0 {
            self.mark_read().await;
        }
        Ok(())
    }

    async fn next_conversation(&mut self, back: bool) -> Result<()> {
        let n = self.app.conversations.len();
        if n == 0 {
            self.app.notice = Some("no conversations yet: /dm USER starts one".into());
            return Ok(());
        }
        let i = match (self.app.current, back) {
            (None, _) => 0,
            (Some(i), false) => (i + 1) % n,
            (Some(i), true) => (i + n - 1) % n,
        };
        self.switch(i).await
    }

    async fn on_key(&mut self, key: KeyEvent, term: &mut Terminal) -> Result<()> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let (_, rows) = Self::size();
        let page = isize::try_from(pane_height(rows).saturating_sub(2).max(1)).unwrap_or(1);
        self.last_key = Instant::now();
        let app = &mut self.app;
        match key.code {
            KeyCode::Char('c') if ctrl => app.quit = true,
            KeyCode::Char('d') if ctrl && app.input.is_empty() => app.quit = true,
            KeyCode::Char('l') if ctrl => term.invalidate(),
            KeyCode::Char('a') if ctrl => app.cursor = 0,
            KeyCode::Char('e') if ctrl => app.cursor = app.input.len(),
            KeyCode::Char('u') if ctrl => {
                app.input.drain(..app.cursor);
                app.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = app.cursor;
                while start > 0 && app.input[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && app.input[start - 1] != ' ' {
                    start -= 1;
                }
                app.input.drain(start..app.cursor);
                app.cursor = start;
            }
            KeyCode::Char(c) if !ctrl => {
                app.input.insert(app.cursor, c);
                app.cursor += 1;
            }
            KeyCode::Backspace if app.cursor > 0 => {
                app.cursor -= 1;
                app.input.remove(app.cursor);
            }
            KeyCode::Delete if app.cursor < app.input.len() => {
                app.input.remove(app.cursor);
            }
            KeyCode::Left => app.cursor = app.cursor.saturating_sub(1),
            KeyCode::Right => app.cursor = (app.cursor + 1).min(app.input.len()),
            KeyCode::Home => app.cursor = 0,
            KeyCode::End => {
                app.cursor = app.input.len();
                return self.scroll(isize::MIN / 2).await;
            }
            KeyCode::Esc => {
                app.notice = None;
                return self.scroll(isize::MIN / 2).await;
            }
            KeyCode::PageUp => return self.scroll(page).await,
            KeyCode::PageDown => return self.scroll(-page).await,
            KeyCode::Up => return self.scroll(1).await,
            KeyCode::Down => return self.scroll(-1).await,
            KeyCode::Tab => return self.next_conversation(false).await,
            KeyCode::BackTab => return self.next_conversation(true).await,
            KeyCode::Enter => {
                let line = app.take_input();
                self.update_typing().await;
                return self.submit(&line).await;
            }
            _ => return Ok(()),
        }
        self.update_typing().await;
        Ok(())
    }

    /// Carries out a line typed in the input.
    async fn submit(&mut self, line: &str) -> Result<()> {
        let Some(input) = command::parse(line) else {
            return Ok(());
        };
        self.app.notice = None;
        let group = self.app.group().cloned();
        let needs_group = !matches!(
            input,
            Input::Dm(_) | Input::Group { .. } | Input::Switch(_) | Input::Help | Input::Quit | Input::Usage(_)
        );
        if needs_group && group.is_none() {
            self.app.notice = Some("no conversation yet: /dm USER starts one".into());
            return Ok(());
        }
        // Commands that do not need one never look at it.
        let g = group.unwrap_or_else(|| GroupId(Vec::new()));
        let result: Result<(), String> = match input {
            Input::Send(text) => match self.client.send_text(&g, &text).await {
                Ok(id) => {
                    self.app.pending.push((g, id, text));
                    self.app.scroll = 0;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            Input::Edit(args) => match self.app.own_target(&args) {
                Ok((_, "")) => Err("/edit [ID] TEXT: the new text is missing".into()),
                Ok((id, text)) => self
                    .client
                    .edit(&g, &id, text)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Input::Delete(id) => match self.app.own_target(id.as_deref().unwrap_or("")) {
                Ok((id, _)) => self.client.delete(&g, &id).await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Input::React { args, remove } => match self.app.react_target(&args) {
                Ok((_, "")) => Err("/react [ID] EMOJI: the emoji is missing".into()),
                Ok((id, emoji)) => self
                    .client
                    .react(&g, &id, emoji, remove)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Input::Invite(user) => {
                self.app.notice = Some(format!("adding {user}…"));
                self.background(|client| async move {
                    match client.add_user(&g, &user).await {
                        Ok(()) => Outcome::Notice(format!("{user} was added")),
                        Err(e) => Outcome::Notice(format!("cannot add {user}: {e}")),
                    }
                });
                Ok(())
            }
            Input::Dm(user) => {
                self.app.notice = Some(format!("opening the conversation with {user}…"));
                self.background(|client| async move {
                    match client.direct(&user).await {
                        Ok(g) => Outcome::Open(g),
                        Err(e) => Outcome::Notice(format!("cannot open a conversation with {user}: {e}")),
                    }
                });
                Ok(())
            }
            Input::Group { name, users } => {
                self.app.notice = Some(format!("creating {name}…"));
                self.background(|client| async move {
                    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
                    match client.create_group(&name, &refs).await {
                        Ok(g) => Outcome::Open(g),
                        Err(e) => Outcome::Notice(format!("cannot create {name}: {e}")),
                    }
                });
                Ok(())
            }
            Input::Switch(name) => {
                let convs = &self.app.conversations;
                let found = convs
                    .iter()
                    .position(|c| c.label == name)
                    .or_else(|| convs.iter().position(|c| c.direct_with.as_deref() == Some(&name)))
                    .or_else(|| convs.iter().position(|c| c.group.to_hex().starts_with(&name)));
                match found {
                    Some(i) => self.switch(i).await.map_err(|e| e.to_string()),
                    None => Err(format!("no conversation {name} (/dm {name} starts one)")),
                }
            }
            Input::Who => {
                let partners = self.app.partners();
                let list: Vec<String> = partners
                    .iter()
                    .map(|(u, s)| match s {
                        Some(s) if s.online => format!("{u} ● online"),
                        _ => format!("{u} ○"),
                    })
                    .collect();
                self.app.notice = Some(format!("you, {}", list.join(", ")));
                self.ask_presence();
                Ok(())
            }
            Input::Safety(user) => {
                let user = user.or_else(|| self.app.conversation().and_then(|c| c.direct_with.clone()));
                match user {
                    Some(user) => {
                        self.background(|client| async move {
                            match client.safety_number(&user).await {
                                Ok(n) => Outcome::Notice(format!("safety number with {user}: {n}")),
                                Err(e) => Outcome::Notice(format!("no safety number with {user}: {e}")),
                            }
                        });
                        Ok(())
                    }
                    None => Err("/safety USER: whose?".into()),
                }
            }
            Input::Help => {
                self.app.notice = Some(command::HELP.into());
                Ok(())
            }
            Input::Quit => {
                self.app.quit = true;
                Ok(())
            }
            Input::Usage(u) => Err(u.into()),
        };
        if let Err(e) = result {
            self.app.notice = Some(e);
        }
        Ok(())
    }
}

/// The terminal in full-screen mode: raw input, the alternate screen. Put
/// back on drop and on panic.
struct Terminal {
    out: std::io::Stdout,
    /// What each row shows now (`None`: unknown, redraw it).
    shown: Vec<Option<Line>>,
}

/// Leaves full-screen mode. Safe to call more than once.
fn restore() {
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    let _ = crossterm::terminal::disable_raw_mode();
}

impl Terminal {
    fn enter() -> std::io::Result<Self> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        crossterm::terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, Clear(ClearType::All)) {
            restore();
            return Err(e);
        }
        Ok(Terminal { out, shown: Vec::new() })
    }

    /// Forgets what is on the screen, so the next draw repaints everything.
    fn invalidate(&mut self) {
        self.shown.clear();
        let _ = execute!(self.out, Clear(ClearType::All));
    }

    /// Writes the rows that differ from what is shown, in one write.
    fn draw(&mut self, screen: &Screen) -> std::io::Result<()> {
        let mut buf: Vec<u8> = Vec::new();
        queue!(buf, BeginSynchronizedUpdate, cursor::Hide)?;
        self.shown.resize(screen.lines.len(), None);
        for (row, line) in screen.lines.iter().enumerate() {
            if self.shown[row].as_ref() == Some(line) {
                continue;
            }
            // Clear first: clearing after writing the last column would erase it.
            queue!(buf, cursor::MoveTo(0, row as u16), Clear(ClearType::UntilNewLine))?;
            for span in line {
                match span.style {
                    Style::Plain => {}
                    Style::Dim => queue!(buf, SetForegroundColor(Color::DarkGrey))?,
                    Style::Name(n) => {
                        const COLORS: [Color; 6] = [
                            Color::Cyan,
                            Color::Magenta,
                            Color::Yellow,
                            Color::Blue,
                            Color::Red,
                            Color::DarkCyan,
                        ];
                        queue!(
                            buf,
                            SetForegroundColor(COLORS[usize::from(n) % COLORS.len()]),
                            SetAttribute(Attribute::Bold)
                        )?
                    }
                    Style::Me => queue!(buf, SetForegroundColor(Color::Green), SetAttribute(Attribute::Bold))?,
                    Style::Notice => queue!(buf, SetForegroundColor(Color::Yellow))?,
                    Style::Good => queue!(buf, SetForegroundColor(Color::Green))?,
                    Style::Bar => queue!(buf, SetAttribute(Attribute::Reverse))?,
                }
                queue!(buf, Print(&span.text), SetAttribute(Attribute::Reset), ResetColor)?;
            }
            self.shown[row] = Some(line.clone());
        }
        let (col, row) = screen.cursor;
        queue!(buf, cursor::MoveTo(col, row), cursor::Show, EndSynchronizedUpdate)?;
        self.out.write_all(&buf)?;
        self.out.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}
